"""What runs inside the experiment's Ray Job: a Ray Tune run over its runnable trials.

``python -m service.job.supervisor --experiment <id>`` (settings from ``ABLATE_*`` variables, which
the controller passes in the job's runtime env, and secrets from the private file
``ABLATE_SECRETS_FILE`` names; nothing here writes them to logs or Tune's state). The store
decides what runs (pending, retrying, and running trials an earlier, lost job left behind), never
Tune's saved state: Tune's restore re-ran finished trials and duplicated MLflow runs. Each Tune
trial calls ``trainer.trial.run_trial``, which continues the trial's own MLflow run and newest
checkpoint, so a retry or a resubmitted job resumes instead of starting over. Evaluations asked
for after their trials finished run after the trials (``service.job.evaluate``), in this job.

Failures: ``TrialDiverged`` and config errors are final (``failed``); anything else, including
the worker process dying, is retried by Tune (``FailureConfig.max_failures``) and the trial is
``retrying`` in between; once retries are exhausted it is ``failed`` with the error stored.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from typing import Any

from pydantic import ValidationError

from service.job.evaluate import run_evaluations
from service.job.looks import add_next_look
from service.job.progress import store_progress
from service.job.schedulable import wait_until_fits
from service.job.threads import pin_threads_to_assigned_cpus
from service.paths import check_config_paths
from service.settings import Settings
from service.specs import RunOptions
from service.store import ACTIVE_STATES, ExperimentView, Store, TrialState
from service.tracking.names import mlflow_experiment_name, trial_tags
from trainer.config import ConfigError, TrainConfig  # torch-free
from trainer.metric_names import DOWNSTREAM_METRICS

log = logging.getLogger("service.job.supervisor")

EVALUATION_ROUNDS = 3
"""Passes over the runnable evaluations a job makes (each pass fails what it could not run)."""

CURVE_POINTS = 200
"""Most points kept per stored learning curve (evenly thinned, first and last kept)."""


def curves_to_store(history: dict[str, list[tuple[int, float]]], metrics: list[str],
                    max_points: int = CURVE_POINTS) -> dict[str, list[tuple[int, float]]]:
    """The part of a trial's history /compare plots: the spec's metrics and their ``val_``
    evaluations, thinned to ``max_points`` each. The store holds this, not MLflow's full
    history: /compare over 500 trials must not make 500 calls to MLflow, nor fail when MLflow
    is down, and every log-step loss curve would bloat each row."""
    keep = {*metrics, *(f"val_{m}" for m in metrics)}
    out = {}
    for key, points in history.items():
        if key not in keep or not points:
            continue
        pts = [(int(st), float(v)) for st, v in points]
        if len(pts) > max_points:
            idx = sorted({round(i * (len(pts) - 1) / (max_points - 1)) for i in range(max_points)})
            pts = [pts[i] for i in idx]
        out[key] = pts
    return out


def trial_plan(store: Store, exp_id: str) -> dict[int, dict[str, Any]]:
    """trial id -> what its worker needs (config, seed, names), for the runnable trials."""
    exp = store.get_experiment(exp_id)
    runnable = {t.id for t in store.runnable_trials(exp_id)}
    plan = {}
    for variant in exp.variants:
        for t in variant.trials:
            if t.id in runnable:
                plan[t.id] = {
                    "trial_id": t.id, "seed": t.seed, "variant": variant.name,
                    "trial_key": t.trial_key, "config": variant.config,
                    "levels": variant.levels,
                }
    return plan


def ray_node_id() -> str | None:
    """The Ray node this process runs on, or None outside a Ray worker."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def run_one(trial: dict[str, Any], exp_ctx: dict[str, Any]) -> dict[str, float]:
    """One attempt of one trial, in a Ray worker: store state around ``run_trial``."""
    from trainer.data.cache import CACHE_ENV  # trainer.data imports torch: workers only
    from trainer.trial import TrialDiverged, run_trial

    settings = Settings()
    # Generated benchmarks and tokenizers are cached once for every trial of the service, not
    # under whatever working directory Ray gives the worker.
    os.environ[CACHE_ENV] = str(settings.data_dir / "data")
    store = Store(settings.db_url, run_migrations=False)
    trial_id = trial["trial_id"]
    try:
        view = store.mark_running(trial_id, worker_pid=os.getpid(),
                                  worker_node=socket.gethostname(),
                                  worker_ray_node=ray_node_id())
        if view is None:  # cancelled or finished meanwhile
            return {"skipped": 1.0}
        try:
            config = TrainConfig.model_validate(trial["config"])
        except ValidationError as err:
            store.mark_failed(trial_id, f"invalid config: {err}")
            return {"failed": 1.0}
        refusals = check_config_paths(config, settings)  # again: a symlink may have moved
        if refusals:
            store.mark_failed(trial_id, "; ".join(f"{r.field}: {r.reason}" for r in refusals))
            return {"failed": 1.0}
        pin_threads_to_assigned_cpus(config)
        ckpt = settings.checkpoint_dir(exp_ctx["experiment_id"], trial["trial_key"])
        report = store_progress(store, trial_id)
        kwargs = {
            "tracking_uri": settings.mlflow_tracking_uri,
            "experiment_id": exp_ctx["mlflow_experiment_id"],
            "experiment_name": exp_ctx["mlflow_experiment_name"],
            "trial_key": trial["trial_key"],
            "run_name": f"{trial['variant']} seed={trial['seed']}",
            "tags": trial_tags(exp_ctx["experiment_id"], trial_id, trial["variant"],
                               trial["seed"], trial["levels"]),
            "parent_run_id": exp_ctx["mlflow_parent_run_id"],
            "checkpoint_dir": ckpt,
        }
        try:
            if exp_ctx.get("workers", 1) > 1:  # rank 0 of a Ray Train run reports progress
                from service.job.data_parallel import run_data_parallel

                result = run_data_parallel(trial, exp_ctx, kwargs, attempt=view.attempts)
            else:
                result = run_trial(config, trial["seed"], progress=report, **kwargs)
        except (TrialDiverged, ConfigError) as err:
            store.mark_failed(trial_id, f"{type(err).__name__}: {err}")
            return {"failed": 1.0}
        except Exception as err:
            msg = f"{type(err).__name__}: {err}"
            if view.attempts > exp_ctx["max_retries"]:
                store.mark_failed(trial_id, f"{msg} (gave up after {view.attempts} attempts)")
                return {"failed": 1.0}
            store.mark_retrying(trial_id, msg)
            raise
        store.mark_finished(
            trial_id, metrics={**result.metrics, **result.cost}, fingerprints=result.fingerprints,
            mlflow_run_id=result.mlflow_run_id,
            mlflow_experiment_id=exp_ctx["mlflow_experiment_id"], steps=result.steps,
            history=curves_to_store(result.history, exp_ctx.get("metrics", [])),
            evaluations=evaluation_results(result.evaluations, result.metrics),
        )
        return {k: float(v) for k, v in result.metrics.items()}
    finally:
        store.close()


def evaluation_results(evaluations: dict[str, str], metrics: dict[str, float]
                       ) -> dict[str, tuple[str, dict[str, float]]]:
    """task -> (evaluation key, its metrics) of a finished trial: its evaluations' rows."""
    return {task: (key, {m: metrics[m] for m in DOWNSTREAM_METRICS.get(task, ()) if m in metrics})
            for task, key in evaluations.items()}


def warm_start_task(config: dict[str, Any], tracking_uri: str, data_dir: str) -> str:
    """In a Ray worker: make sure the warm start ``config`` names exists (its key returned)."""
    from trainer.data.cache import CACHE_ENV  # trainer.data imports torch: workers only
    from trainer.warm_start import ensure_warm_start

    os.environ[CACHE_ENV] = data_dir
    cfg = TrainConfig.model_validate(config)
    if cfg.runtime.threads is None:
        pin_threads_to_assigned_cpus(cfg)
    return ensure_warm_start(cfg, tracking_uri=tracking_uri).key


def distinct_warm_starts(plan: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One config per distinct (data, model, init) among the trials that use a warm start: the
    arms of an experiment usually share one, and it is computed before any arm starts."""
    seen: dict[str, dict[str, Any]] = {}
    for trial in plan.values():
        cfg = trial["config"]
        if not cfg.get("init", {}).get("warm_start"):
            continue
        ident = json.dumps({k: cfg.get(k) for k in ("data", "model", "init")}, sort_keys=True)
        seen.setdefault(ident, cfg)
    return list(seen.values())


def run_warm_starts(plan: dict[int, dict[str, Any]], settings: Settings,
                    cpus: float) -> None:
    """Compute the experiment's warm starts once, before Tune starts its arms (a trial that
    finds one missing, after a crash here, computes it itself under the same lock). Nothing
    else of this experiment runs meanwhile, so the task takes the CPUs its arms would."""
    import ray

    task = ray.remote(warm_start_task).options(num_cpus=cpus, max_retries=1)
    for cfg in distinct_warm_starts(plan):
        key = ray.get(task.remote(cfg, settings.mlflow_tracking_uri,
                                  str(settings.data_dir / "data")))
        log.info("warm start %s ready", key)


def _tune_trainable(config: dict[str, Any], plan: dict[int, dict[str, Any]],
                    exp_ctx: dict[str, Any]) -> None:
    from ray import tune

    tune.report(run_one(plan[config["trial_id"]], exp_ctx))


def _make_callback() -> Any:
    from ray.tune import Callback

    class StoreCallback(Callback):
        """Records what only the driver sees: a worker that died (retry) or a final error.

        Holds neither a Store nor its URL: Tune pickles its callbacks into the experiment's
        folder (an engine does not pickle, and the URL may carry a password); the driver
        reads the URL from its settings when a callback first needs the store.
        """

        def __init__(self) -> None:
            self._store: Store | None = None

        def __getstate__(self) -> dict[str, Any]:
            return {"_store": None}

        @property
        def store(self) -> Store:
            if self._store is None:
                self._store = Store(Settings().db_url, run_migrations=False)
            return self._store

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.store.mark_retrying(
                trial.config["trial_id"], f"worker failed: {_error_of(trial)}",
                only_if_running=True,
            )

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.store.mark_failed(
                trial.config["trial_id"], f"retries exhausted: {_error_of(trial)}"
            )

    return StoreCallback()


def _error_of(trial: Any) -> str:
    for attr in ("error_msg", "error_message"):
        msg = getattr(trial, attr, None)
        if msg:
            return str(msg).strip().splitlines()[-1][:500]
    return "the worker process died"


def run_tune(store: Store, exp: ExperimentView, options: RunOptions, settings: Settings,
             plan: dict[int, dict[str, Any]], name: str) -> None:
    """One Ray Tune run over ``plan`` (after its warm starts); a trial Tune gave up on without
    telling the callback is failed."""
    import ray
    from ray import tune

    exp_ctx: dict[str, Any] = {
        "experiment_id": exp.id,
        "mlflow_experiment_id": exp.mlflow_experiment_id,
        "mlflow_experiment_name": mlflow_experiment_name(exp),
        "mlflow_parent_run_id": exp.mlflow_parent_run_id,
        "max_retries": settings.max_retries,
        "metrics": options.tracked_metrics(),
    }
    res, per_worker = options.resources, options.resources.per_worker()
    cluster = ray.cluster_resources()
    cluster_cpus = cluster.get("CPU", res.trial_cpus)
    arms_cpus = res.trial_cpus * (options.max_concurrent_trials or len(plan))
    run_warm_starts(plan, settings, max(per_worker["cpus"], min(arms_cpus, cluster_cpus)))
    resources: dict[str, float] = {"cpu": res.cpus, "gpu": res.gpus}
    concurrent = options.max_concurrent_trials
    if res.workers > 1:  # the Tune trial only waits on its Ray Train workers
        from service.job.data_parallel import DRIVER_RESOURCES, worker_resources

        exp_ctx.update(workers=res.workers, train_storage=str(settings.data_dir / "train"),
                       resources=worker_resources(res.workers, per_worker))
        resources = dict(DRIVER_RESOURCES)
        fit = int(cluster_cpus // res.trial_cpus)
        if per_worker["gpus"] > 0:
            fit = min(fit, int(cluster.get("GPU", 0.0) // (per_worker["gpus"] * res.workers)))
        concurrent = max(1, min(concurrent or fit, fit))
    trainable = tune.with_resources(
        tune.with_parameters(_tune_trainable, plan=plan, exp_ctx=exp_ctx), resources
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"trial_id": tune.grid_search(sorted(plan))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=concurrent,
            # A worker runs trial after trial: torch and the trainer are imported once per
            # worker, not once per trial. Each attempt records the PID it runs in, so a
            # killed worker still fails (and retries) exactly the trial it was running.
            reuse_actors=True,
            trial_name_creator=lambda t: f"trial_{t.config['trial_id']}",
            trial_dirname_creator=lambda t: f"trial_{t.config['trial_id']}",
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(settings.data_dir / "tune"),
            failure_config=tune.FailureConfig(max_failures=settings.max_retries),
            callbacks=[_make_callback()],
            verbose=1,
        ),
    )
    tuner.fit()
    for t in store.runnable_trials(exp.id):  # Tune gave up on it without telling us
        if t.id in plan and t.state in ACTIVE_STATES:
            store.mark_failed(t.id, t.error or "the trial ended without a result")


def supervise(exp_id: str, settings: Settings) -> int:
    """Run every runnable trial of the experiment, and for adaptive seeds every look after
    (``service.job.looks``: the store says which look it is at), then its runnable downstream
    evaluations (``service.job.evaluate``); returns a process exit code."""
    import ray

    store = Store(settings.db_url, run_migrations=False)
    exp = store.get_experiment(exp_id)
    options = RunOptions.model_validate(exp.spec)
    plan = trial_plan(store, exp_id)
    if not plan and options.adaptive and add_next_look(store, exp_id):
        plan = trial_plan(store, exp_id)  # a lost job's successor, between two looks
    log.info("experiment %s: %d runnable trials", exp_id, len(plan))
    if plan:
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=True)
        unfit = wait_until_fits(options.resources.per_worker(), ray.nodes,
                                settings.unschedulable_after_s)
        if unfit is not None:
            log.warning("experiment %s: %s", exp_id, unfit)
            for trial_id in plan:
                store.mark_failed(trial_id, unfit)
            plan = {}
    round_ = 0
    while plan:
        sid = exp.job_submission_id or exp_id
        run_tune(store, exp, options, settings, plan, sid if round_ == 0 else f"{sid}-{round_}")
        added = add_next_look(store, exp_id) if options.adaptive else 0
        if not added:
            break
        log.info("experiment %s: %d trials added for the next look", exp_id, added)
        plan = trial_plan(store, exp_id)
        round_ += 1
    for _ in range(EVALUATION_ROUNDS):  # a request during a round adds to the next
        if not store.evaluations.runnable(exp_id):
            break
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=True)
        run_evaluations(store, store.get_experiment(exp_id), options, settings)
    exp = store.get_experiment(exp_id)
    if not any(t.state in ACTIVE_STATES for t in exp.trials):
        from service.job.finalize import finalize  # imports MLflow: only now
        from service.tracking.parent_runs import ParentRuns

        try:
            finalize(ParentRuns(settings, store), exp_id)
        except Exception:  # a report must never fail the job; the reconciler tries again
            log.exception("experiment %s: the end-of-experiment step failed", exp_id)
    failed = sum(t.state == TrialState.FAILED for t in exp.trials)
    log.info("experiment %s: %s (%d failed)", exp_id, exp.status, failed)
    store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.job.supervisor", description=__doc__)
    parser.add_argument("--experiment", required=True, help="experiment id in the store")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return supervise(args.experiment, Settings())


if __name__ == "__main__":
    sys.exit(main())
