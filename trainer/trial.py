"""The trial entry point the service calls: a TrainConfig and a seed in, metrics and the MLflow
run out. Idempotent: a trial whose run already FINISHED returns its recorded result; one that was
interrupted resumes from its checkpoint inside its own MLflow run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainer import keys
from trainer.config import TrainConfig
from trainer.loop import Progress, TrialDiverged, train
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
        return TrialResult(
            done["metrics"], run.run_id or "", done["steps"], done["protocol"],
            {k: [tuple(p) for p in v] for k, v in done.get("history", {}).items()},
            done.get("cost", {}), done.get("fingerprints", {}),
        )
    run.open(config.flat())
    ok = False
    try:
        run.log_json("config.json", config.model_dump(mode="json"))
        outcome = train(
            config, seed, checkpoint_dir=checkpoint_dir, logger=run, progress=progress
        )
        run.set_tags({"protocol": outcome.protocol,
                      **{f"fingerprint.{k}": v for k, v in outcome.fingerprints.items()}})
        run.log_json(
            "final_metrics.json",
            {"metrics": outcome.metrics, "protocol": outcome.protocol, "steps": outcome.steps,
             "history": outcome.history, "cost": outcome.cost,
             "fingerprints": outcome.fingerprints},
        )
        ok = True
        return TrialResult(outcome.metrics, run.run_id or "", outcome.steps, outcome.protocol,
                           outcome.history, outcome.cost, outcome.fingerprints)
    finally:
        run.close(ok)
