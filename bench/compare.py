"""Time ``analyze`` + ``render("json")`` on a large planted ablation.

100 variants x 5 seeds x 8 metrics (with 20-step learning curves), the size the
service promises to analyse in well under 200 ms. Not a test: prints the median.

    .venv/bin/python bench/compare.py [--repeats 15] [--design explicit|add_one_in|factorial]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.analysis import ExperimentView, TrialRecord, VariantView, analyze  # noqa: E402
from service.report import render  # noqa: E402

GOAL_MS = 200.0
METRICS = ["mean_recall", "t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10", "val_loss"]


def planted_view(
    n_variants: int = 100, n_seeds: int = 5, design: str = "explicit"
) -> ExperimentView:
    """Variants with small planted gains, shared seed effects, one unfinished seed each 10th."""
    rng = np.random.default_rng(0)
    gains = rng.normal(0, 1.0, n_variants)
    gains[0] = 0.0
    seed_effect = rng.normal(0, 0.8, n_seeds)
    variants, trials = [], []
    for i in range(n_variants):
        levels = {"A": str(i % 2), "B": str((i // 2) % 2)} if design == "factorial" else {}
        name = f"v{i:03d}"
        variants.append(VariantView(name=name, factor_levels=levels))
        for s in range(n_seeds):
            if i % 10 == 9 and s == n_seeds - 1:
                trials.append(TrialRecord(variant=name, seed=s, status="running"))
                continue
            base = 60 + gains[i] + seed_effect[s]
            metrics = {m: base - 5 * k + rng.normal(0, 0.5) for k, m in enumerate(METRICS[:-1])}
            metrics["val_loss"] = 2.0 - gains[i] / 20 + rng.normal(0, 0.03)
            curve = [(step * 500, base * step / 20 + rng.normal(0, 0.3)) for step in range(1, 21)]
            trials.append(
                TrialRecord(
                    variant=name,
                    seed=s,
                    status="finished",
                    metrics=metrics,
                    history={"mean_recall": curve},
                    mlflow_url=f"http://mlflow:5000/#/experiments/1/runs/{name}-{s}",
                )
            )
    return ExperimentView(
        name="bench",
        design=design,
        variants=variants,
        baseline="v000",
        primary_metric="mean_recall",
        metrics=METRICS,
        trials=trials,
    )


def time_once(view: ExperimentView) -> tuple[float, int]:
    start = time.perf_counter()
    body, _ = render(analyze(view), "json")
    return (time.perf_counter() - start) * 1000, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--design",
        default="explicit",
        choices=["explicit", "add_one_in", "leave_one_out", "factorial"],
    )
    args = parser.parse_args()
    view = planted_view(design=args.design)
    time_once(view)  # warm-up: imports (statsmodels, scipy) and caches
    runs = [time_once(view) for _ in range(args.repeats)]
    ms = statistics.median(t for t, _ in runs)
    print(
        f"analyze+render(json) {args.design}: 100 variants x 5 seeds x {len(METRICS)} metrics: "
        f"median {ms:.1f} ms over {args.repeats} runs (min {min(t for t, _ in runs):.1f} ms), "
        f"{runs[0][1] / 1024:.0f} KiB JSON; {ms / GOAL_MS:.2f}x of the {GOAL_MS:.0f} ms goal"
    )


if __name__ == "__main__":
    main()
