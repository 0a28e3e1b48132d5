"""Reproduce a paper's ablation through the service and keep the evidence.

Starts the embedded stack (Ray, MLflow, controller) on loopback, POSTs the spec (default
``experiments/albef_table1.yaml``), waits for it to finish, and writes to ``bench/results/``:

- ``<name>.md``: the machine, the duration, the commit, the paper's claims checked one by one
  (each row against the previous one, with its 95% CI), then the full comparison table;
- ``<name>.png``: the comparison plot;
- ``<name>.json``: the full analysis, for anyone who wants to re-check the numbers.

``--set key=value`` overrides the spec's base config (e.g. ``schedule.steps=50`` for a smoke run);
overridden runs are labelled as such in the markdown so they cannot pass for the real thing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
# Ray ships the driver's sys.path to its workers; bench/ on it would shadow the trainer package
# with bench/trainer.py, so put the project root there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(ROOT))

from service.settings import Settings  # noqa: E402
from service.stack.embedded import Stack, free_port  # noqa: E402
from service.states import TERMINAL_STATUSES  # noqa: E402

# What ALBEF's Table 1 claims, as (row, what the paper reports) pairs; each row is compared with
# the row above it, which differs by exactly the added component (add_one_in design).
ALBEF_CLAIMS = {
    "+ITC": "ITC is the largest gain (paper: +ITC over MLM+ITM, every recall up)",
    "+ITC+ITM_hard": "hard negatives help ITM (paper: +ITM_hard over +ITC, all recalls up)",
    "+ITC+ITM_hard+ITC_MoD": "momentum distillation on ITC helps under noisy captions (paper: "
                             "small gain)",
    "+ITC+ITM_hard+ITC_MoD+MLM_MoD": "MoD on MLM as well (paper: full model, small gain)",
}


def machine() -> dict[str, Any]:
    """What the run ran on, without any path of this machine."""
    import psutil
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
    }


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    sha = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return sha + (" (with uncommitted changes)" if dirty else "")


DOWNSTREAM_TASKS = ["vqa", "nlvr", "ve", "grounding", "retrieval_ft", "minimal_pairs"]


def load_spec(path: Path, overrides: list[str], seeds: int | None,
              downstream: bool = False) -> dict[str, Any]:
    """The spec as written, plus the overrides; ``downstream`` turns every downstream task on
    (``eval.downstream.tasks``, outside the trial key) and changes nothing else."""
    spec = yaml.safe_load(path.read_text())
    if downstream:
        spec.setdefault("base", {}).setdefault("set", {})["eval.downstream.tasks"] = \
            DOWNSTREAM_TASKS
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value")
        spec.setdefault("base", {}).setdefault("set", {})[key] = yaml.safe_load(raw)
    if seeds is not None:
        spec["seeds"] = seeds
    return spec


def run(spec: dict[str, Any], controller: str, timeout: float) -> tuple[dict, float]:
    """POST the spec and wait; returns the final experiment and the wall time from POST."""
    with httpx.Client(base_url=controller, timeout=120) as api:
        t0 = time.perf_counter()
        r = api.post("/experiments", json=spec)
        if r.status_code >= 400:
            raise SystemExit(f"POST /experiments: HTTP {r.status_code}: {r.text}")
        created = r.json()
        print(f"submitted {created['id']}: {created['trials']} trials", flush=True)
        last = ""
        while True:
            exp = api.get(f"/experiments/{created['id']}").raise_for_status().json()
            line = ", ".join(f"{k} {v}" for k, v in sorted(exp["states"].items()))
            if line != last:
                print(f"  {time.perf_counter() - t0:7.0f} s  {exp['status']}: {line}", flush=True)
                last = line
            if exp["status"] in TERMINAL_STATUSES:
                return exp, time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                api.post(f"/experiments/{created['id']}/cancel")
                raise SystemExit(f"gave up after {timeout:.0f} s; cancelled")
            time.sleep(2)


def fetch(controller: str, exp_id: str, fmt: str) -> bytes:
    with httpx.Client(base_url=controller, timeout=300) as api:
        return api.get(f"/experiments/{exp_id}/compare",
                       params={"format": fmt}).raise_for_status().content


def _fmt_ci(cmp: dict[str, Any]) -> str:
    if cmp.get("delta") is None:
        return "n/a"
    ci = cmp.get("ci")
    interval = f" [{ci['low']:+.2f}, {ci['high']:+.2f}]" if ci else ""
    p = cmp.get("p_corrected")
    p_txt = f", p(Holm) {p:.3g}" if p is not None else ""
    return f"{cmp['delta']:+.2f}{interval}{p_txt}"


def claims_table(analysis: dict[str, Any], claims: dict[str, str]) -> list[str]:
    """One line per paper claim: the row's change over the previous row on the primary metric."""
    metric = analysis["primary_metric"]
    rows = ["| Row vs previous row | Paper | Δ " + metric + " [95% CI] | Verdict |",
            "|---|---|---|---|"]
    by_name = {v["name"]: v for v in analysis["variants"]}
    for name, paper in claims.items():
        v = by_name.get(name)
        if v is None:
            continue
        cmp = v.get("vs_previous", {}).get(metric, {})
        rows.append(f"| {name} vs {cmp.get('reference', '?')} | {paper} | {_fmt_ci(cmp)} | "
                    f"{cmp.get('verdict', 'insufficient data')} |")
    return rows


def downstream_table(analysis: dict[str, Any]) -> list[str]:
    """Per variant and downstream task, the change on the task's primary metric, against the
    previous row in an add-one-in design (each row adds one component) and against the
    baseline otherwise; the verdict is within the metric (Holm over that metric's
    comparisons), and the family's p (Holm over variants x tasks, each against the
    baseline, as /compare declares it) is given beside it."""
    section = analysis.get("downstream")
    if not section:
        return []
    against = "vs_previous" if analysis.get("design") == "add_one_in" else "vs_baseline"
    family = {(f["variant"], f["task"]): f for f in section.get("family", [])}
    primaries = [(b["task"], b["primary"]) for b in section["tasks"]]
    if section.get("meta_sum"):
        primaries.append(("Meta-Sum", section["meta_sum"]))
    rows = ["| Variant | vs | Task | Δ (percentage points) [95% CI], p(Holm) | Verdict | "
            "p family (vs baseline) |", "|---|---|---|---|---|---|"]
    for v in analysis["variants"]:
        if v.get("is_baseline"):
            continue
        for task, metric in primaries:
            cmp = v.get(against, {}).get(metric, {})
            if not cmp:
                continue
            scaled = _percent(cmp)
            fam = family.get((v["name"], task), {})
            p_fam = fam.get("p_family")
            rows.append(f"| {v['name']} | {cmp.get('reference', '?')} | {task} ({metric}) | "
                        f"{_fmt_ci(scaled)} | {cmp.get('verdict', 'insufficient data')} | "
                        + (f"{p_fam:.3g}" if p_fam is not None else "") + " |")
    return rows


def _percent(cmp: dict[str, Any]) -> dict[str, Any]:
    """A comparison of fractions (downstream metrics are in [0, 1]) in percentage points."""
    out = dict(cmp)
    if out.get("delta") is not None:
        out["delta"] = 100 * out["delta"]
    if out.get("ci"):
        out["ci"] = {"low": 100 * out["ci"]["low"], "high": 100 * out["ci"]["high"]}
    return out


def markdown(spec_path: Path, spec: dict[str, Any], exp: dict[str, Any], wall: float,
             analysis: dict[str, Any], table_md: str, overrides: list[str]) -> str:
    m = machine()
    lines = [
        f"# Reproduction: `{spec_path.relative_to(ROOT)}`",
        "",
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Commit: {commit()}",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
        f"Python {m['python']}, torch {m['torch']}",
        f"- Duration: {wall / 60:.1f} min from POST to the last trial "
        f"({sum(exp['states'].values())} trials, status {exp['status']}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(exp["states"].items())) + ")",
        f"- Command: `python bench/reproduce.py --spec {spec_path.relative_to(ROOT)}"
        + (" --downstream" if "eval.downstream.tasks" in spec.get("base", {}).get("set", {})
           else "")
        + "".join(f" --set {o}" for o in overrides) + "`",
    ]
    if overrides:
        lines.append(f"- **Overridden run** ({', '.join(overrides)}): not the spec as written.")
    lines += ["", f"Seeds: {spec.get('seeds')}. Primary metric: {analysis['primary_metric']} "
              f"(higher is better). Intervals are {int(analysis['confidence'] * 100)}% "
              f"{analysis['ci_method']} intervals; p values Holm-corrected per comparison kind.",
              ""]
    if spec_path.name == "albef_table1.yaml":
        lines += ["## The paper's claims, row by row", ""]
        lines += claims_table(analysis, ALBEF_CLAIMS)
        lines.append("")
    if analysis.get("downstream"):
        lines += ["## Downstream tasks, per variant", ""]
        lines += downstream_table(analysis)
        lines.append("")
    lines += ["## Full comparison", "", table_md.strip(), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", type=Path, default=ROOT / "experiments" / "albef_table1.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="override the spec's base config")
    ap.add_argument("--seeds", type=int, default=None, help="override the spec's seeds")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout", type=float, default=3 * 3600)
    ap.add_argument("--downstream", action="store_true",
                    help="evaluate every trial on every downstream task (the spec unchanged "
                    "otherwise); results go to <spec>-downstream.*")
    args = ap.parse_args()

    spec_path = args.spec.resolve()
    spec = load_spec(spec_path, args.overrides, args.seeds, args.downstream)
    spec["rerun"] = True  # measure the run, never reuse cached trials from an earlier one
    overrides = args.overrides + ([f"seeds={args.seeds}"] if args.seeds is not None else [])
    work = Path(tempfile.mkdtemp(prefix="ablate-reproduce-"))
    settings = Settings(data_dir=work / "data", port=free_port(), mlflow_port=free_port(),
                        ray_dashboard_port=free_port(), ray_gcs_port=free_port())
    print(f"{spec_path.name}: stack with {args.cpus} CPUs, work dir {work}", flush=True)
    with Stack(settings, num_cpus=args.cpus) as stack:
        exp, wall = run(spec, stack.settings.controller_url, args.timeout)
        url = stack.settings.controller_url
        analysis = json.loads(fetch(url, exp["id"], "json"))
        table_md = fetch(url, exp["id"], "markdown").decode()
        png = fetch(url, exp["id"], "png")

    args.out.mkdir(parents=True, exist_ok=True)
    stem = (spec_path.stem + ("-downstream" if args.downstream else "")
            + ("-overridden" if overrides else ""))
    md = markdown(spec_path, spec, exp, wall, analysis, table_md, overrides)
    (args.out / f"{stem}.md").write_text(md)
    (args.out / f"{stem}.png").write_bytes(png)
    (args.out / f"{stem}.json").write_text(json.dumps(analysis, indent=1) + "\n")
    print(md)
    print(f"wrote {args.out / stem}.{{md,png,json}}")
    if exp["status"] != "finished":
        raise SystemExit(1)


if __name__ == "__main__":
    main()
