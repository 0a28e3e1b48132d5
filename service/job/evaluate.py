"""Downstream evaluations asked for after their trials finished, run by the experiment's job.

The store decides what runs (``Store.evaluations.runnable``), as it does for trials. Each
evaluation (trial x task) is one Ray task, so the fine-tunes of one trial run in parallel
where the cluster has room. A task calls ``trainer.trial.run_trial`` again for its FINISHED
trial, with the same trial key, checkpoint folder and MLflow experiment, so its run is found
by its trial key (no second run) and only the evaluation it lacks runs, on the kept trunk. A
cached trial's evaluation runs on its source trial's trunk and run.

Failures: a missing trunk or a refused config is final (``failed``); anything else is retried
by Ray (``max_retries``) and the evaluation is ``pending`` in between.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from service.job.threads import pin_threads_to_assigned_cpus
from service.settings import Settings
from service.specs import RunOptions
from service.store import ExperimentView, Store
from service.tracking.names import mlflow_experiment_name, trial_tags
from trainer.config import ConfigError, TrainConfig  # torch-free
from trainer.metric_names import (
    DOWNSTREAM_METRICS,
    finetune_flops_metric,
    finetune_seconds_metric,
)

log = logging.getLogger("service.job.evaluate")


def evaluation_plan(store: Store, exp: ExperimentView) -> list[dict[str, Any]]:
    """What each runnable evaluation's worker needs: its variant's config narrowed to its one
    task (the others are stored or run by their own Ray task), the trial and where it ran."""
    trials = {t.id: (v, t) for v in exp.variants for t in v.trials}
    plan = []
    for e in store.evaluations.runnable(exp.id):
        variant, trial = trials[e.trial_id]
        config = dict(variant.config)
        config["eval"] = {**config.get("eval", {})}
        config["eval"]["downstream"] = {**config["eval"].get("downstream", {}),
                                        "tasks": [e.task]}
        target = store.evaluations.target(trial.id)
        plan.append({
            "evaluation_id": e.id, "trial_id": trial.id, "task": e.task,
            "evaluation_key": e.evaluation_key, "seed": trial.seed, "variant": variant.name,
            "levels": variant.levels, "config": config, "trial_key": target.trial_key,
            "target_experiment": target.experiment_id,
            "mlflow_experiment_id": target.mlflow_experiment_id,
        })
    return plan


def evaluate_one(item: dict[str, Any], exp_ctx: dict[str, Any]) -> str:
    """One attempt of one evaluation, in a Ray worker: store state around ``run_trial``."""
    from trainer.data.cache import CACHE_ENV  # trainer.data imports torch: workers only
    from trainer.trial import run_trial

    settings = Settings()
    os.environ[CACHE_ENV] = str(settings.data_dir / "data")
    store = Store(settings.db_url, run_migrations=False)
    eval_id, task = item["evaluation_id"], item["task"]
    try:
        view = store.evaluations.mark_running(eval_id)
        if view is None:  # done or failed meanwhile
            return "skipped"
        try:
            config = TrainConfig.model_validate(item["config"])
            pin_threads_to_assigned_cpus(config)
            result = run_trial(
                config, item["seed"], tracking_uri=settings.mlflow_tracking_uri,
                experiment_id=item["mlflow_experiment_id"] or exp_ctx["mlflow_experiment_id"],
                experiment_name=exp_ctx["mlflow_experiment_name"],
                trial_key=item["trial_key"],
                run_name=f"{item['variant']} seed={item['seed']}",
                tags=trial_tags(exp_ctx["experiment_id"], item["trial_id"], item["variant"],
                                item["seed"], item["levels"]),
                parent_run_id=exp_ctx["mlflow_parent_run_id"],
                checkpoint_dir=settings.checkpoint_dir(item["target_experiment"],
                                                       item["trial_key"]),
            )
        except (FileNotFoundError, ConfigError, ValueError) as err:
            store.evaluations.mark_failed(eval_id, f"{type(err).__name__}: {err}")
            return "failed"
        except Exception as err:
            msg = f"{type(err).__name__}: {err}"
            if view.attempts > exp_ctx["max_retries"]:
                store.evaluations.mark_failed(eval_id, f"{msg} (gave up after "
                                              f"{view.attempts} attempts)")
                return "failed"
            store.evaluations.mark_pending(eval_id, msg)
            raise
        key = result.evaluations.get(task, item["evaluation_key"])
        wanted = {*DOWNSTREAM_METRICS[task], finetune_seconds_metric(task),
                  finetune_flops_metric(task)}
        metrics = {k: v for k, v in result.metrics.items() if k in wanted}
        store.evaluations.mark_done(item["trial_id"], task, key, metrics)
        if key != item["evaluation_key"]:  # the trainer keyed it otherwise: say so, keep both
            store.evaluations.mark_failed(eval_id, f"the trainer evaluated {task} under key "
                                          f"{key}, not {item['evaluation_key']}")
        return "done"
    finally:
        store.close()


def run_evaluations(store: Store, exp: ExperimentView, options: RunOptions,
                    settings: Settings) -> int:
    """Every runnable evaluation of ``exp`` as parallel Ray tasks; returns how many ran. One
    that Ray gave up on without the worker recording it is failed with the reason."""
    import ray

    plan = evaluation_plan(store, exp)
    if not plan:
        return 0
    exp_ctx = {
        "experiment_id": exp.id, "mlflow_experiment_id": exp.mlflow_experiment_id,
        "mlflow_experiment_name": mlflow_experiment_name(exp),
        "mlflow_parent_run_id": exp.mlflow_parent_run_id, "max_retries": settings.max_retries,
    }
    per = options.resources.per_worker()
    task = ray.remote(evaluate_one).options(
        num_cpus=per["cpus"], num_gpus=per["gpus"], max_retries=settings.max_retries,
        retry_exceptions=True)
    refs = {item["evaluation_id"]: task.remote(item, exp_ctx) for item in plan}
    errors: dict[int, str] = {}
    for eval_id, ref in refs.items():
        try:
            ray.get(ref)
        except Exception as err:  # retries exhausted, or the worker died each time
            errors[eval_id] = f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:500]}"
    for e in store.evaluations.runnable(exp.id):
        if e.id in refs:
            store.evaluations.mark_failed(e.id, errors.get(e.id, e.error or
                                                           "the evaluation ended without "
                                                           "a result"))
    log.info("experiment %s: %d evaluations run", exp.id, len(plan))
    return len(plan)
