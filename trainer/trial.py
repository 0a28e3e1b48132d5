"""The trial entry point the service calls: a TrainConfig and a seed in, metrics and the MLflow
run out. Idempotent: a trial whose run already FINISHED returns its recorded result; one that was
interrupted resumes from its checkpoint inside its own MLflow run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainer import keys
from trainer.config import TrainConfig
from trainer.downstream.run import (
    Evaluation,
    evaluate_task,
    evaluation_key,
    pretrained_trainer,
)
from trainer.loop import Progress, Trainer, TrialDiverged
from trainer.tracking import TrialRun, git_commit

__all__ = ["TrialDiverged", "TrialResult", "run_trial"]


@dataclass
class TrialResult:
    metrics: dict[str, float]
    mlflow_run_id: str
    steps: int
    protocol: str
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    evaluations: dict[str, str] = field(default_factory=dict)
    """Downstream task -> the key of the evaluation whose metrics ``metrics`` holds."""


def run_trial(
    config: TrainConfig,
    seed: int,
    *,
    tracking_uri: str,
    checkpoint_dir: str | Path,
    experiment_id: str | None = None,
    experiment_name: str | None = None,
    trial_key: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    will_train: Callable[[bool], None] | None = None,
) -> TrialResult:
    """Train one trial inside its MLflow run; the run ends FINISHED or FAILED, never RUNNING.

    ``will_train`` hears, before anything is trained, whether this call trains (False: the run
    already FINISHED and its recorded result is returned): rank 0 of data-parallel workers
    tells the others with it whether to join."""
    key = trial_key or keys.trial_key(config, seed)
    warm_key = None
    if config.init.warm_start:  # its own MLflow run, computed once and shared across trials
        from trainer.warm_start import ensure_warm_start

        warm_key = ensure_warm_start(config, tracking_uri=tracking_uri).key
    all_tags = {
        "config_hash": config.config_hash(),
        "code_fingerprint": keys.code_fingerprint(),
        "seed": str(seed),
        **({"git_commit": c} if (c := git_commit()) else {}),
        **({"warm_start_key": warm_key} if warm_key else {}),
        **(tags or {}),
    }
    run = TrialRun(
        tracking_uri, trial_key=key, experiment_id=experiment_id,
        experiment_name=experiment_name, run_name=run_name, tags=all_tags,
        parent_run_id=parent_run_id, torch_threads=config.runtime.threads,
    )
    done = run.finished_metrics()
    if will_train is not None:
        will_train(done is None)
    if done is not None:
        # only the evaluations it lacks run, on the trunk its final checkpoint kept
        metrics, evaluations, prints = downstream(
            config, seed, key, run, done["steps"],
            lambda: pretrained_trainer(config, seed, str(checkpoint_dir)))
        return TrialResult(
            {**done["metrics"], **metrics}, run.run_id or "", done["steps"], done["protocol"],
            {k: [tuple(p) for p in v] for k, v in done.get("history", {}).items()},
            done.get("cost", {}), {**done.get("fingerprints", {}), **prints}, evaluations,
        )
    run.open(config.flat())
    ok = False
    try:
        run.log_json("config.json", config.model_dump(mode="json"))
        trainer = Trainer(config, seed, checkpoint_dir=checkpoint_dir, logger=run,
                          progress=progress)
        outcome = trainer.run()
        run.set_tags({"protocol": outcome.protocol,
                      **{f"fingerprint.{k}": v for k, v in outcome.fingerprints.items()}})
        run.log_json(
            "final_metrics.json",
            {"metrics": outcome.metrics, "protocol": outcome.protocol, "steps": outcome.steps,
             "history": outcome.history, "cost": outcome.cost,
             "fingerprints": outcome.fingerprints},
        )
        metrics, evaluations, prints = downstream(config, seed, key, run, outcome.steps,
                                                  lambda: trainer)
        ok = True
        return TrialResult({**outcome.metrics, **metrics}, run.run_id or "", outcome.steps,
                           outcome.protocol, outcome.history, outcome.cost,
                           {**outcome.fingerprints, **prints}, evaluations)
    finally:
        run.close(ok)


def downstream(config: TrainConfig, seed: int, key: str, run: TrialRun, step: int,
               trunk: Callable[[], Trainer]
               ) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """Every task of ``eval.downstream.tasks`` on this trial: a stored evaluation (artifact
    ``downstream/<task>-<evaluation key>.json`` on the trial's run) is read back, a missing
    one is computed, logged (metrics ``<task>_<metric>`` at the trial's last step) and
    stored. ``trunk`` is only called when something must be computed. Returns the metrics,
    the evaluation keys and the fine-tunes' fingerprints (``finetune.<task>``: head init and
    data order, equal across arms at one seed), which the pairing check then covers."""
    if not config.eval.downstream.tasks:
        return {}, {}, {}
    metrics: dict[str, float] = {}
    keys: dict[str, str] = {}
    prints: dict[str, str] = {}
    trainer: Trainer | None = None
    for task in config.eval.downstream.tasks:
        eval_key = evaluation_key(key, task, config)
        name = f"downstream/{task}-{eval_key}.json"
        saved = run.read_json(name)
        if saved is not None:
            evaluation = Evaluation.from_json(saved)
        else:
            trainer = trainer or trunk()
            evaluation = evaluate_task(trainer, task, trial_key=key)
            run.log_metrics({**evaluation.trial_metrics(), **evaluation.cost_metrics()}, step,
                            force=True)
            run.log_json(name, evaluation.as_json())
            run.set_tags({f"evaluation.{task}": eval_key,
                          **({f"fingerprint.finetune.{task}": evaluation.fingerprint}
                             if evaluation.fingerprint else {})})
        metrics |= evaluation.trial_metrics() | evaluation.cost_metrics()
        keys[task] = eval_key
        if evaluation.fingerprint:
            prints[f"finetune.{task}"] = evaluation.fingerprint
    return metrics, keys, prints
