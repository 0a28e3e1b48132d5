"""How steadily does the core learn ITC? The quick budget over several seeds, side by side.

The ITC-only quick budget (400 steps, 400 training images, 100 test images, batch 64, one torch
thread per trial) is trained for each seed; the bench prints each seed's mean recall and the
step at which the ITC loss first falls below 0.9 * ln(batch) (the end of the chance plateau),
then mean +- sd over seeds. Every statistic the service prints is only as decisive as this
spread, so recipe choices are made here, on a seed range of their own (1000.. by default), never
on the reproductions' seeds.

    .venv/bin/python bench/stability.py                       # the recipe as configured
    .venv/bin/python bench/stability.py --set model.text.pooling=cls --label old-pooling
    .venv/bin/python bench/stability.py --warm-start           # arms start from the warm start

Two seeds run at a time (one thread each: the machine has two cores).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUICK_BUDGET: dict[str, Any] = {
    "objectives.itm.enabled": False,
    "objectives.mlm.enabled": False,
    "objectives.itc.enabled": True,
    "objectives.itc.queue": False,
    "objectives.itc.distill": False,
    "schedule.steps": 400,
    "schedule.warmup_steps": 40,
    "data.num_train_images": 400,
    "data.num_val_images": 50,
    "data.num_test_images": 100,
    "data.batch_size": 64,
    "runtime.threads": 1,
    "runtime.log_every": 1,
    "runtime.device": "cpu",
}


def plateau_exit(history: list[tuple[int, float]], batch: int) -> int | None:
    """First step whose ITC loss is below 0.9 * ln(batch); None if it never leaves chance."""
    bar = 0.9 * math.log(batch)
    return next((step for step, value in history if value < bar), None)


def run_seed(preset: str, dotted: dict[str, Any], seed: int) -> dict[str, Any]:
    from trainer.config import build_config
    from trainer.loop import train

    cfg = build_config(preset, dotted=dotted)
    start = time.perf_counter()
    out = train(cfg, seed)
    return {
        "seed": seed,
        "mean_recall": out.metrics["mean_recall"],
        "plateau_exit": plateau_exit(out.history.get("loss_itc", []), cfg.data.batch_size),
        "seconds": time.perf_counter() - start,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    recalls = [r["mean_recall"] for r in rows]
    exits = [r["plateau_exit"] for r in rows]
    return {
        "mean": statistics.fmean(recalls),
        "sd": statistics.stdev(recalls) if len(recalls) > 1 else 0.0,
        "plateau_exit": exits,
    }


def parse_sets(items: list[str]) -> dict[str, Any]:
    from trainer.config import parse_override

    return dict(parse_override(item) for item in items)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="extra override section.key=value (repeatable)")
    ap.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=None,
                    help="force init.warm_start on or off (default: the preset's choice)")
    ap.add_argument("--label", default="")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the rows and summary here")
    args = ap.parse_args(argv)

    dotted = {**QUICK_BUDGET, **parse_sets(args.sets)}
    if args.warm_start is not None:
        dotted["init.warm_start"] = args.warm_start
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    label = args.label or " ".join(args.sets) or "as configured"
    print(f"stability [{label}] preset={args.preset} seeds={seeds[0]}..{seeds[-1]}", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(run_seed, [args.preset] * len(seeds), [dotted] * len(seeds), seeds))
    for r in rows:
        print(f"  seed {r['seed']}: mean recall {r['mean_recall']:6.2f}  "
              f"plateau exit {r['plateau_exit']}  ({r['seconds']:.0f} s)")
    s = summarise(rows)
    print(f"  => mean recall {s['mean']:.2f} +- {s['sd']:.2f} (sd over {len(rows)} seeds); "
          f"plateau exit steps {s['plateau_exit']}; wall {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"label": label, "overrides": dotted, "rows": rows,
                                         "summary": s}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
