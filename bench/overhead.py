"""What the service costs per trial, measured side by side in one run on one machine.

The same N tiny trials (one config, N seeds), three ways, all logging to the same MLflow server:

1. ``loop``: a plain Python loop calling ``trainer.trial.run_trial`` one after another;
2. ``tune``: a plain Ray Tune script on the same Ray head (1 CPU per trial);
3. ``service``: POST the spec to the controller, wait until the experiment is finished.

Prints wall times, the service's overhead per trial above plain Tune (goal: <= 1.5 s) and the
parallel speed-up of Tune and of the service over the loop (goal: a real speed-up on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import httpx

ROOT = Path(__file__).resolve().parent.parent
# Ray ships the driver's sys.path to its workers; bench/ on it would shadow the trainer package
# with bench/trainer.py, so put the project root there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(ROOT))

from service.settings import Settings  # noqa: E402
from service.stack import Stack, free_port  # noqa: E402

POLL_S = 0.5
"""How often the bench asks the controller (``ablate watch`` asks every 1 s). Each GET costs the
controller CPU that the trials on 2 cores would otherwise get; 10 Hz polling cost them ~10%."""

OVERRIDES = {
    "schedule.warmup_steps": 2,
    "data.num_train_images": 200,
    "data.num_val_images": 20,
    "data.num_test_images": 50,
    "eval.rerank_k": 4,
    "runtime.log_every": 5,
    "runtime.checkpoint_every": 10,
}


def config(steps: int, cache: str):
    from service.specs import nest
    from trainer.config import build_config

    return build_config("tiny", overrides=nest(spec_set(steps, cache)))


def spec_set(steps: int, cache: str) -> dict:
    """One data cache for all three ways, so none pays for generating the benchmark."""
    return {**OVERRIDES, "schedule.steps": steps, "data.root": cache}


def warm_up(tracking_uri: str, work: Path) -> None:
    """Generate the benchmark and tokenizer once, outside the timings."""
    from trainer.trial import run_trial

    run_trial(config(1, str(work / "cache")), 999, tracking_uri=tracking_uri,
              experiment_name="bench-warmup", checkpoint_dir=work / "warmup")


def run_loop(n: int, steps: int, tracking_uri: str, work: Path) -> float:
    import torch

    from trainer.trial import run_trial

    torch.set_num_threads(1)  # what each Ray trial gets (1 CPU): the same work per trial
    cfg = config(steps, str(work / "cache"))
    t0 = time.perf_counter()
    for seed in range(n):
        run_trial(cfg, seed, tracking_uri=tracking_uri, experiment_name="bench-loop",
                  checkpoint_dir=work / "loop" / str(seed), run_name=f"loop seed={seed}")
    return time.perf_counter() - t0


def _tune_trial(params: dict, tracking_uri: str, steps: int, work: str) -> None:
    from ray import tune

    from trainer.trial import run_trial

    seed = params["seed"]
    started = time.time()  # after the imports, where the service's trial marks itself running
    result = run_trial(config(steps, str(Path(work) / "cache")), seed, tracking_uri=tracking_uri,
                       experiment_name="bench-tune", run_name=f"tune seed={seed}",
                       checkpoint_dir=Path(work) / "tune" / str(seed))
    tune.report({**result.metrics, "wall_started": started, "wall_finished": time.time()})


class Timeline(NamedTuple):
    """Where the wall time went: before the first trial started, inside the trials, after."""

    wall: float
    startup: float  # submit -> first trial running (job, driver, Tune, worker, imports)
    in_trial: float  # mean time a trial spent running (after its imports)
    tail: float  # last trial done -> seen as done by the caller

    def line(self, name: str, n: int) -> str:
        return (f"  {name:<8} {self.wall:7.1f} s  ({self.wall / n:.2f} s per trial; startup "
                f"{self.startup:.1f} s, {self.in_trial:.1f} s inside each trial, "
                f"tail {self.tail:.1f} s)")


def timeline(t0: float, t1: float, spans: list[tuple[float, float]]) -> Timeline:
    """From epoch times: submit ``t0``, done ``t1`` and each trial's (start, end)."""
    return Timeline(
        wall=t1 - t0, startup=min(s for s, _ in spans) - t0,
        in_trial=sum(e - s for s, e in spans) / len(spans), tail=t1 - max(e for _, e in spans),
    )


def run_tune(n: int, steps: int, tracking_uri: str, work: Path, gcs: str) -> Timeline:
    import ray
    from mlflow.tracking import MlflowClient
    from ray import tune

    from trainer.tracking import ensure_experiment

    ensure_experiment(MlflowClient(tracking_uri), "bench-tune")  # first write, before trials
    ray.init(address=gcs, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        t0 = time.time()
        trainable = tune.with_resources(
            tune.with_parameters(_tune_trial, tracking_uri=tracking_uri, steps=steps,
                                 work=str(work)),
            {"cpu": 1},
        )
        grid = tune.Tuner(
            trainable, param_space={"seed": tune.grid_search(list(range(n)))},
            run_config=tune.RunConfig(storage_path=str(work / "tune-results"), verbose=0),
        ).fit()
        t1 = time.time()
        spans = [(r.metrics["wall_started"], r.metrics["wall_finished"]) for r in grid]
        return timeline(t0, t1, spans)
    finally:
        ray.shutdown()


def run_service(n: int, steps: int, controller: str, work: Path) -> Timeline:
    spec = {
        "name": "bench-service", "design": "explicit", "variants": {"tiny": {}},
        "base": {"preset": "tiny", "set": spec_set(steps, str(work / "cache"))},
        "seeds": n, "resources": {"cpus": 1}, "rerun": True,
    }
    with httpx.Client(base_url=controller, timeout=120) as api:
        t0 = time.time()
        exp_id = api.post("/experiments", json=spec).raise_for_status().json()["id"]
        while True:
            exp = api.get(f"/experiments/{exp_id}").json()
            if exp["status"] in ("finished", "failed", "cancelled"):
                break
            time.sleep(POLL_S)
        t1 = time.time()
    if exp["status"] != "finished":
        raise SystemExit(f"service run ended {exp['status']}: {exp['states']}")
    trials = [t for v in exp["variants"] for t in v["trials"]]
    spans = [(_epoch(t["started_at"]), _epoch(t["finished_at"])) for t in trials]
    return timeline(t0, t1, spans)


def _epoch(stamp: str) -> float:
    """The store's timestamps are UTC (naive in SQLite)."""
    when = dt.datetime.fromisoformat(stamp)
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ablate-bench-"))
    settings = Settings(data_dir=work / "data", port=free_port(), mlflow_port=free_port(),
                        ray_dashboard_port=free_port(), ray_gcs_port=free_port())
    print(f"{args.trials} trials x {args.steps} steps (tiny preset), Ray with {args.cpus} CPUs")
    with Stack(settings, num_cpus=args.cpus) as stack:
        uri = settings.mlflow_tracking_uri
        gcs = f"127.0.0.1:{settings.ray_gcs_port}"
        warm_up(uri, work)
        loop = run_loop(args.trials, args.steps, uri, work)
        print(f"  loop     {loop:7.1f} s  ({loop / args.trials:.2f} s per trial)", flush=True)
        tuned = run_tune(args.trials, args.steps, uri, work, gcs)
        print(tuned.line("tune", args.trials), flush=True)
        served = run_service(args.trials, args.steps, stack.settings.controller_url, work)
        print(served.line("service", args.trials), flush=True)
    tune_wall, service = tuned.wall, served.wall
    over = (service - tune_wall) / args.trials
    print(f"service overhead above plain Tune: {over:+.2f} s per trial (goal <= 1.5 s)")
    print(f"speed-up over the loop: tune x{loop / tune_wall:.2f}, service x{loop / service:.2f}")


if __name__ == "__main__":
    main()
