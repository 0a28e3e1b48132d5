"""What the service costs per trial, measured side by side in one run on one machine.

The same N tiny trials (one config, N seeds), three ways, all logging to the same MLflow server:

1. ``loop``: a plain Python loop calling ``trainer.trial.run_trial`` one after another;
2. ``tune``: Ray Tune's ``fit`` in this process on the same Ray head (1 CPU per trial), timed
   from after ``ray.init``: Tune's own cost only;
3. ``script``: the same Tune run as a script in its own process, timed from its start to its
   exit: what a user pays who runs a Tune script instead of the service (Python's start,
   imports, ``ray.init``, just as the service's job driver pays them);
4. ``service``: POST the spec to the controller, wait until the experiment is finished.

Prints wall times, the service's overhead per trial above Tune both ways (goal: <= 1.5 s), the
parallel speed-up over the loop (goal: a real speed-up on 2 cores), and where the service's
start-up went (process creation times read while it runs).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import httpx

ROOT = Path(__file__).resolve().parent.parent
# Ray ships the driver's sys.path to its workers; bench/ on it would shadow the trainer package
# with bench/trainer.py, so put the project root there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(ROOT))

from service.settings import LOOPBACK, Settings  # noqa: E402
from service.stack.embedded import Stack, free_port  # noqa: E402
from service.states import TERMINAL_STATUSES  # noqa: E402

RAY_CONNECT_TIMEOUT_S = 60.0
"""How long joining the stack's Ray may take before the bench stops with the reason (it takes
about 2 s; a driver that looks for its raylet at the wrong address retries forever)."""

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


def cache_root(work: Path) -> str:
    """The benchmark's data for every way, under the stack's data dir: a spec may name data
    only there (the service's path confinement), and all four ways share one cache."""
    return str(work / "data" / "cache")


def config(steps: int, cache: str):
    from trainer.config import build_config, nest

    return build_config("tiny", overrides=nest(spec_set(steps, cache)))


def spec_set(steps: int, cache: str) -> dict:
    """One data cache for all three ways, so none pays for generating the benchmark."""
    return {**OVERRIDES, "schedule.steps": steps, "data.root": cache}


def warm_up(tracking_uri: str, work: Path) -> None:
    """Generate the benchmark and tokenizer once, outside the timings."""
    from trainer.trial import run_trial

    run_trial(config(1, cache_root(work)), 999, tracking_uri=tracking_uri,
              experiment_name="bench-warmup", checkpoint_dir=work / "warmup")


def run_loop(n: int, steps: int, tracking_uri: str, work: Path) -> float:
    import torch

    from trainer.trial import run_trial

    torch.set_num_threads(1)  # what each Ray trial gets (1 CPU): the same work per trial
    cfg = config(steps, cache_root(work))
    t0 = time.perf_counter()
    for seed in range(n):
        run_trial(cfg, seed, tracking_uri=tracking_uri, experiment_name="bench-loop",
                  checkpoint_dir=work / "loop" / str(seed), run_name=f"loop seed={seed}")
    return time.perf_counter() - t0


def _tune_trial(params: dict, tracking_uri: str, steps: int, work: str, way: str) -> None:
    import psutil
    from ray import tune

    from trainer.trial import run_trial

    seed = params["seed"]
    started = time.time()  # after the imports, where the service's trial marks itself running
    worker_created = psutil.Process().create_time()
    result = run_trial(config(steps, cache_root(Path(work))), seed, tracking_uri=tracking_uri,
                       experiment_name=f"bench-{way}", run_name=f"{way} seed={seed}",
                       checkpoint_dir=Path(work) / way / str(seed))
    tune.report({**result.metrics, "wall_started": started, "wall_finished": time.time(),
                 "worker_created": worker_created})


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


class StartupWatch:
    """When each process a start goes through was created, read while the start runs.

    The points, in seconds after submit: the Ray job's supervisor actor, the job's driver
    (``service.job.supervisor``), the first trial worker, the first trial past its imports. They
    split the service's startup into parts that plain Tune has (worker, imports) and parts it
    does not (controller, Ray Jobs, the driver's own start).
    """

    def __init__(self, t0: float, exp_id: str) -> None:
        self.t0, self.exp_id = t0, exp_id
        self.points: dict[str, float] = {}

    def poll(self, exp: dict) -> None:
        import psutil

        for proc in psutil.process_iter(["cmdline", "create_time"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            created = proc.info["create_time"] or 0.0
            if "ray::JobSupervisor" in cmd and created >= self.t0 - 0.05:
                self.points.setdefault("job supervisor", created)
            elif f"--experiment {self.exp_id}" in cmd:
                self.points.setdefault("driver", created)
        for t in (t for v in exp.get("variants", []) for t in v["trials"]):
            if t.get("worker_pid") and "trial worker" not in self.points:
                with contextlib.suppress(psutil.Error):
                    self.points["trial worker"] = psutil.Process(t["worker_pid"]).create_time()

    def line(self, first_trial_running: float) -> str:
        points = {**self.points, "trial running": first_trial_running}
        ordered = sorted(points.items(), key=lambda kv: kv[1])
        parts = [f"{k} +{v - self.t0:.1f} s" for k, v in ordered]
        return "  service startup, after POST: " + ", ".join(parts)


def timeline(t0: float, t1: float, spans: list[tuple[float, float]]) -> Timeline:
    """From epoch times: submit ``t0``, done ``t1`` and each trial's (start, end)."""
    return Timeline(
        wall=t1 - t0, startup=min(s for s, _ in spans) - t0,
        in_trial=sum(e - s for s, e in spans) / len(spans), tail=t1 - max(e for _, e in spans),
    )


class TuneRun(NamedTuple):
    """Epoch times of one Tune ``fit``: its start and end, each trial's span, the first
    trial worker's creation."""

    t0: float
    t1: float
    spans: list[tuple[float, float]]
    worker_created: float


def connect_ray(gcs: str, on_timeout: Callable[[], None] | None = None,
                timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Join the stack's Ray as its own processes do, with ``Stack.ray_client_env()`` in the
    environment before Ray is imported: without its loopback switch the driver takes the
    machine's own address for its node's, looks for a raylet there that the loopback head never
    has, and retries every 5 s forever ("Failed to connect to GCS"). A watchdog ends the process
    with the reason if joining takes longer than ``timeout_s`` (``ray.init`` blocks in native
    code, where no Python signal arrives)."""
    import ray
    from ray._private import ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER:
        raise SystemExit("bench/overhead.py: Ray was imported without the stack's loopback "
                         "switch (Stack.ray_client_env()); its driver would look for the head "
                         "beyond loopback")

    joined = threading.Event()

    def watchdog() -> None:
        if not joined.wait(timeout_s):
            print(f"bench/overhead.py: could not join Ray at {gcs} as a driver on {LOOPBACK} "
                  f"within {timeout_s:.0f} s; stopping", file=sys.stderr, flush=True)
            if on_timeout is not None:
                on_timeout()
            os._exit(3)

    threading.Thread(target=watchdog, daemon=True, name="ray-connect-watchdog").start()
    ray.init(address=gcs, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    joined.set()


def tune_fit(n: int, steps: int, tracking_uri: str, work: Path, gcs: str, way: str,
             on_timeout: Callable[[], None] | None = None) -> TuneRun:
    """Connect to Ray and run the N trials under Tune (``way`` names the trials' checkpoint
    folder, so two runs never resume each other)."""
    import ray
    from mlflow.tracking import MlflowClient
    from ray import tune

    from trainer.tracking import ensure_experiment

    ensure_experiment(MlflowClient(tracking_uri), "bench-tune")  # first write, before trials
    connect_ray(gcs, on_timeout=on_timeout)
    try:
        t0 = time.time()
        trainable = tune.with_resources(
            tune.with_parameters(_tune_trial, tracking_uri=tracking_uri, steps=steps,
                                 work=str(work), way=way),
            {"cpu": 1},
        )
        grid = tune.Tuner(
            trainable, param_space={"seed": tune.grid_search(list(range(n)))},
            run_config=tune.RunConfig(storage_path=str(work / f"{way}-results"), verbose=0),
        ).fit()
        return TuneRun(t0, time.time(),
                       [(r.metrics["wall_started"], r.metrics["wall_finished"]) for r in grid],
                       min(r.metrics["worker_created"] for r in grid))
    finally:
        ray.shutdown()


def run_tune(n: int, steps: int, tracking_uri: str, work: Path, gcs: str,
             on_timeout: Callable[[], None]) -> tuple[Timeline, str]:
    """Tune's ``fit`` in this process, timed from after ``ray.init``."""
    run = tune_fit(n, steps, tracking_uri, work, gcs, way="tune", on_timeout=on_timeout)
    first = min(s for s, _ in run.spans)
    detail = (f"  tune startup, after fit: trial worker +{run.worker_created - run.t0:.1f} s, "
              f"trial running +{first - run.t0:.1f} s")
    return timeline(run.t0, run.t1, run.spans), detail


def run_tune_script(n: int, steps: int, tracking_uri: str, work: Path, gcs: str) -> Timeline:
    """The same Tune run as a script a user would start: timed from process start to exit, so
    it pays Python's start, the imports and ``ray.init`` as the service's job driver does."""
    t0 = time.time()
    done = subprocess.run(
        [sys.executable, __file__, "--tune-script", "--trials", str(n), "--steps", str(steps),
         "--gcs", gcs, "--tracking-uri", tracking_uri, "--work", str(work)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"the Tune script failed ({done.returncode}):\n{done.stderr[-3000:]}")
    out = done.stdout
    t1 = time.time()
    spans = json.loads(out.strip().splitlines()[-1])["spans"]
    return timeline(t0, t1, [(a, b) for a, b in spans])


def run_service(n: int, steps: int, controller: str, work: Path) -> tuple[Timeline, str]:
    spec = {
        "name": "bench-service", "design": "explicit", "variants": {"tiny": {}},
        "base": {"preset": "tiny", "set": spec_set(steps, cache_root(work))},
        "seeds": n, "resources": {"cpus": 1}, "rerun": True,
    }
    with httpx.Client(base_url=controller, timeout=120) as api:
        t = time.perf_counter()  # the controller's first expansion: what its first POST imports
        api.post("/experiments?dry_run=true", json=spec).raise_for_status()
        dry_run_s = time.perf_counter() - t
        t0 = time.time()
        exp_id = api.post("/experiments", json=spec).raise_for_status().json()["id"]
        watch = StartupWatch(t0, exp_id)
        watch.points["201 Created"] = time.time()
        while True:
            exp = api.get(f"/experiments/{exp_id}").json()
            if exp["status"] in TERMINAL_STATUSES:
                break
            starting = "trial worker" not in watch.points
            if starting:  # fine-grained only while the start runs: the trials need the CPU
                watch.poll(exp)
            time.sleep(0.1 if starting else POLL_S)
        t1 = time.time()
        t = time.perf_counter()  # a warm POST: store, MLflow experiment, no job (all cached)
        api.post("/experiments", json={**spec, "rerun": False}).raise_for_status()
        cached_s = time.perf_counter() - t
    if exp["status"] != "finished":
        raise SystemExit(f"service run ended {exp['status']}: {exp['states']}")
    trials = [t for v in exp["variants"] for t in v["trials"]]
    spans = [(_epoch(t["started_at"]), _epoch(t["finished_at"])) for t in trials]
    posts = (f"  controller: first dry-run POST {dry_run_s:.2f} s, POST to 201 "
             f"{watch.points['201 Created'] - t0:.2f} s, warm POST of the same spec (all "
             f"cached, no job) {cached_s:.2f} s")
    return timeline(t0, t1, spans), watch.line(min(s for s, _ in spans)) + "\n" + posts


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
    # the child process of run_tune_script
    ap.add_argument("--tune-script", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--gcs", help=argparse.SUPPRESS)
    ap.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tune_script:
        run = tune_fit(args.trials, args.steps, args.tracking_uri, args.work, args.gcs,
                       way="script")
        print(json.dumps({"spans": run.spans}))
        return

    work = Path(tempfile.mkdtemp(prefix="ablate-bench-"))
    settings = Settings(data_dir=work / "data", port=free_port(), mlflow_port=free_port(),
                        ray_dashboard_port=free_port(), ray_gcs_port=free_port())
    n = args.trials
    print(f"{n} trials x {args.steps} steps (tiny preset), Ray with {args.cpus} CPUs")
    with Stack(settings, num_cpus=args.cpus) as stack:
        os.environ.update(stack.ray_client_env())  # the Tune runs join its Ray, which wants a token
        uri = settings.mlflow_tracking_uri
        gcs = f"127.0.0.1:{settings.ray_gcs_port}"
        warm_up(uri, work)
        loop = run_loop(n, args.steps, uri, work)
        print(f"  loop     {loop:7.1f} s  ({loop / n:.2f} s per trial)", flush=True)
        tuned, tune_start = run_tune(n, args.steps, uri, work, gcs, on_timeout=stack.stop)
        print(tuned.line("tune", n), flush=True)
        script = run_tune_script(n, args.steps, uri, work, gcs)
        print(script.line("script", n), flush=True)
        served, service_start = run_service(n, args.steps, stack.settings.controller_url, work)
        print(served.line("service", n), flush=True)
        print(tune_start)
        print(service_start)
    for name, base in (("Tune's fit (in-process, after ray.init)", tuned.wall),
                       ("a plain Tune script (process start to exit)", script.wall)):
        over = (served.wall - base) / n
        print(f"service overhead above {name}: {over:+.2f} s per trial (goal <= 1.5 s)")
    print(f"speed-up over the loop: tune x{loop / tuned.wall:.2f}, script "
          f"x{loop / script.wall:.2f}, service x{loop / served.wall:.2f}")


if __name__ == "__main__":
    main()
