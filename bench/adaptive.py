"""Time to a verdict: the same two questions through the service with adaptive seeds and with the
fixed design at ``max`` seeds, side by side in one run on one stack.

The questions (the demo's recipe, ``experiments/quick.yaml``, on the built-in benchmark): is ITC
worth it (a large effect) and are ITM hard negatives (a small one)? One leave-one-out experiment
asks both against the full model. Adaptive: ``seeds: {initial: 3, max: 10}``, O'Brien-Fleming
spending, alpha 0.05; fixed: ``seeds: 10``, paired t tests with Holm. Both ``rerun``: every trial
is trained, nothing is reused between the two. Printed: trials run, wall time from POST to the
last decision, and each comparison's decision under both designs.

    python bench/adaptive.py [--max 10] [--initial 3] [--cpus 2] [--futility 0.1]

Settings were fixed before the first run (the demo's recipe unchanged, max 10 seeds as in
``bench/stability.py``); nothing is tuned on the outcome.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(ROOT))

from service.settings import Settings  # noqa: E402
from service.stack.embedded import Stack, free_port  # noqa: E402
from service.states import TERMINAL_STATUSES  # noqa: E402

QUESTIONS = {
    "ITC": {"path": "objectives.itc.enabled", "levels": [False, True]},
    "HN": {"path": "objectives.itm.hard_negatives", "levels": [False, True]},
}


def spec_for(seeds: Any, name: str) -> dict[str, Any]:
    spec = yaml.safe_load((ROOT / "experiments" / "quick.yaml").read_text())
    spec = copy.deepcopy(spec)
    spec.update(name=name, design="leave_one_out", factors=QUESTIONS, seeds=seeds, rerun=True)
    return spec


def run(api: httpx.Client, spec: dict[str, Any], timeout: float) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    r = api.post("/experiments", json=spec)
    if r.status_code >= 400:
        raise SystemExit(f"POST {spec['name']}: HTTP {r.status_code}: {r.text}")
    exp_id = r.json()["id"]
    while True:
        exp = api.get(f"/experiments/{exp_id}").raise_for_status().json()
        if exp["status"] in TERMINAL_STATUSES:
            return exp, time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"{spec['name']}: gave up after {timeout:.0f} s")
        time.sleep(2)


def decisions(api: httpx.Client, exp: dict[str, Any]) -> dict[str, str]:
    body = api.get(f"/experiments/{exp['id']}/compare").raise_for_status().json()
    if body.get("sequential"):
        return {c["variant"]: f"{c['decision']} ({c['seeds']} seeds)"
                for c in body["sequential"]["comparisons"]}
    out = {}
    for v in body["variants"]:
        cmp = (v.get("vs_baseline") or {}).get(body["primary_metric"])
        if cmp:
            p = cmp.get("p_corrected")
            out[v["name"]] = f"{cmp['verdict']} (Holm p {p:.3g})" if p is not None \
                else cmp["verdict"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--initial", type=int, default=3)
    ap.add_argument("--max", type=int, default=10)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout", type=float, default=2 * 3600)
    ap.add_argument("--futility", type=float, default=None,
                    help="conditional-power futility threshold for the adaptive design")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ablate-adaptive-"))
    settings = Settings(data_dir=work / "data", port=free_port(), mlflow_port=free_port(),
                        ray_dashboard_port=free_port(), ray_gcs_port=free_port())
    rows = []
    with Stack(settings, num_cpus=args.cpus) as stack, \
            httpx.Client(base_url=stack.settings.controller_url, timeout=300) as api:
        for label, seeds in (("adaptive", {"initial": args.initial, "max": args.max}),
                             ("fixed", args.max)):
            spec = spec_for(seeds, f"time-to-verdict-{label}")
            if label == "adaptive" and args.futility is not None:
                spec["stopping"] = {"futility": args.futility}
            exp, wall = run(api, spec, args.timeout)
            trained = sum(1 for v in exp["variants"] for t in v["trials"])
            rows.append((label, exp["status"], trained, wall, decisions(api, exp)))
            print(f"{label}: {exp['status']}, {trained} trials, {wall:.0f} s", flush=True)
    print("\n| design | status | trials | wall to last decision | decisions |")
    print("|:--|:--|--:|--:|:--|")
    for label, status, trained, wall, dec in rows:
        print(f"| {label} | {status} | {trained} | {wall / 60:.1f} min | "
              f"{json.dumps(dec, ensure_ascii=False)} |")
    (_, _, t_adaptive, w_adaptive, _), (_, _, t_fixed, w_fixed, _) = rows
    print(f"\ntrials: fixed / adaptive = {t_fixed / t_adaptive:.2f}x; "
          f"wall: {w_fixed / w_adaptive:.2f}x")


if __name__ == "__main__":
    main()
