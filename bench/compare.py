"""Time ``analyze`` + ``render("json")`` on a large planted ablation, alone and through the API.

100 variants x 5 seeds x 8 metrics (with 20-step learning curves), the size the service
promises to answer in well under 200 ms. Two figures side by side, in one run:

* pure: ``analyze`` + ``render("json")`` on an in-memory view;
* API: ``GET /experiments/{id}/compare?format=json`` from the real app under uvicorn (a thread
  on 127.0.0.1, Ray and MLflow pointed at a closed port: /compare needs neither), over a SQLite
  store holding the same numbers, planted through ``service.store`` as the supervisor writes
  them. The difference is what loading 500 trials and their curves, building the view and HTTP
  cost.

Not a test: prints medians.

    .venv/bin/python bench/compare.py [--repeats 15] [--design explicit|add_one_in|factorial]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


def plant_store(view: ExperimentView, data_dir: Path) -> tuple[object, str]:
    """A store holding ``view``'s trials, written through ``service.store``; (store, id)."""
    from service.store import NewTrial, NewVariant, Store

    store = Store(f"sqlite:///{data_dir / 'bench.db'}")
    seeds = sorted({t.seed for t in view.trials})
    levels = {v.name: v.factor_levels for v in view.variants}
    spec = {
        "name": view.name, "design": view.design, "seeds": seeds,
        "metrics": {"primary": view.primary_metric, "reported": view.metrics},
    }
    if view.design == "explicit":
        spec["variants"] = [{"name": v.name} for v in view.variants]
    else:  # the spec only needs to say which design; the levels come from the variants
        spec["factors"] = {f: {"path": "schedule.steps", "levels": [1, 2]}
                           for f in (view.variants[0].factor_levels or {"A": ""})}
    exp = store.create_experiment(
        name=view.name, description="", spec=spec, design=view.design, baseline=view.baseline,
        primary_metric=view.primary_metric, reuse_cached=False,
        variants=[
            NewVariant(name=v.name, levels=levels[v.name], overrides={}, config={},
                       config_hash="0" * 16,
                       trials=[NewTrial(seed=s, trial_key=f"{v.name}-{s}") for s in seeds])
            for v in view.variants
        ],
    )
    by_key = {(t.variant, t.seed): t for t in view.trials}
    for t in exp.trials:
        record = by_key[(t.variant, t.seed)]
        store.mark_running(t.id, worker_pid=1)
        if record.done:
            store.mark_finished(t.id, metrics=record.metrics, mlflow_run_id=f"r{t.id}",
                                mlflow_experiment_id="1", steps=10_000, history=record.history)
    return store, exp.id


@contextmanager
def serve(store: object, data_dir: Path) -> Iterator[str]:
    """The real app under uvicorn on 127.0.0.1 in a thread; yields its base URL."""

    from service.api import create_app
    from service.settings import Settings
    from service.stack.embedded import serve_in_thread

    settings = Settings(data_dir=data_dir, ray_address="http://127.0.0.1:9",
                        mlflow_tracking_uri="http://127.0.0.1:9",
                        mlflow_ui_url="http://mlflow:5000")
    app = create_app(settings, store=store, reconcile=False)
    with serve_in_thread(app, log_level="error") as base:
        yield base


def time_api(client, exp_id: str, fmt: str = "json") -> tuple[float, int]:
    start = time.perf_counter()
    r = client.get(f"/experiments/{exp_id}/compare", params={"format": fmt})
    r.raise_for_status()
    return (time.perf_counter() - start) * 1000, len(r.content)


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
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        store, exp_id = plant_store(view, Path(tmp))
        planted_s = time.perf_counter() - start
        with serve(store, Path(tmp)) as url, httpx.Client(base_url=url, timeout=60) as client:
            time_api(client, exp_id)  # warm-up
            api = [time_api(client, exp_id) for _ in range(args.repeats)]
        store.close()
    api_ms = statistics.median(t for t, _ in api)
    print(
        f"GET /compare?format=json  {args.design}: same numbers from the store "
        f"(planted in {planted_s:.1f} s) via uvicorn: median {api_ms:.1f} ms over "
        f"{args.repeats} requests (min {min(t for t, _ in api):.1f} ms), "
        f"{api[0][1] / 1024:.0f} KiB; {api_ms / GOAL_MS:.2f}x of the {GOAL_MS:.0f} ms goal; "
        f"{api_ms / ms:.2f}x the pure figure"
    )


if __name__ == "__main__":
    main()
