"""A trial as N data-parallel workers: a Ray Train ``TorchTrainer`` started from its Tune trial.

With ``resources.workers`` > 1 the Tune trial (which holds almost nothing itself) runs
``TorchTrainer.fit()``: Ray Train places N workers with ``cpus_per_worker``/``gpus_per_worker``
each, joins them in a process group (gloo on CPU, nccl on GPUs), and each runs the same trainer
on its shard of every global batch (``trainer.distributed``). Rank 0 runs ``run_trial``: the
trial's one MLflow run, its progress in the store, its checkpoints; the other ranks train
without logging. Every rank resumes from the trial's checkpoint, so a retry (Tune's, after any
worker died) continues where the last checkpoint left off.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trainer.config import ConfigError, TrainConfig

DRIVER_RESOURCES = {"cpu": 0.0, "memory": 256 * 2**20}
"""What the Tune trial itself holds while its workers train: no CPU (it only waits on them,
and Ray Train's controller takes none), so N workers x 1 CPU fit on N CPUs; some memory, since
Ray refuses a request of nothing at all."""
FINAL_ERROR = "final_error"
RESULT = "trial_result"


def torch_backend(gpus_per_worker: float) -> str:
    """nccl when each worker has whole GPUs; gloo on CPU, and with GPU fractions, where two
    workers may share a device (NCCL refuses two ranks on one)."""
    return "nccl" if gpus_per_worker >= 1 else "gloo"


def worker_resources(workers: int, per_worker: dict[str, float]) -> dict[str, Any]:
    return {"workers": workers, "cpus_per_worker": per_worker["cpus"],
            "gpus_per_worker": per_worker["gpus"]}


def run_data_parallel(trial: dict[str, Any], exp_ctx: dict[str, Any],
                      trial_kwargs: dict[str, Any], *, attempt: int) -> Any:
    """Train ``trial`` on ``resources["workers"]`` workers; rank 0's ``TrialResult``. A
    divergence or config error on the workers is raised here as such (final), anything else as
    Ray Train's error (Tune retries the trial)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from trainer.trial import TrialDiverged, TrialResult

    resources = exp_ctx["resources"]
    per_worker = {"CPU": resources["cpus_per_worker"]}
    if resources["gpus_per_worker"] > 0:
        per_worker["GPU"] = resources["gpus_per_worker"]
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"trial": trial, "kwargs": trial_kwargs,
                           "cpus_per_worker": resources["cpus_per_worker"]},
        torch_config=TorchConfig(backend=torch_backend(resources["gpus_per_worker"])),
        scaling_config=ray.train.ScalingConfig(
            num_workers=resources["workers"], use_gpu=resources["gpus_per_worker"] > 0,
            resources_per_worker=per_worker,
        ),
        run_config=ray.train.RunConfig(
            # one Train run per attempt: what resumes is the trial's own checkpoint
            name=f"{exp_ctx['experiment_id']}-trial_{trial['trial_id']}-attempt_{attempt}",
            storage_path=exp_ctx["train_storage"],
            failure_config=ray.train.FailureConfig(max_failures=0),  # Tune retries the trial
        ),
    )
    metrics = trainer.fit().metrics or {}  # rank 0's report
    if FINAL_ERROR in metrics:
        kind, _, msg = str(metrics[FINAL_ERROR]).partition(": ")
        if kind == "TrialDiverged":
            raise TrialDiverged(msg)
        field, _, reason = msg.partition(": ")
        raise ConfigError(field, reason)
    if RESULT not in metrics:
        raise RuntimeError("the data-parallel workers ended without a result")
    raw = json.loads(metrics[RESULT])
    raw["history"] = {k: [tuple(p) for p in v] for k, v in raw.get("history", {}).items()}
    return TrialResult(**raw)


def _worker(cfg: dict[str, Any]) -> None:
    """One rank, in a Ray Train worker whose process group Ray Train has set up."""
    import ray.train
    import torch
    import torch.distributed as dist

    from service.settings import Settings
    from trainer.data.cache import CACHE_ENV
    from trainer.loop import train
    from trainer.trial import TrialDiverged

    trial = cfg["trial"]
    rank = ray.train.get_context().get_world_rank()
    settings = Settings()
    os.environ[CACHE_ENV] = str(settings.data_dir / "data")
    config = TrainConfig.model_validate(trial["config"])
    if config.runtime.threads is None:
        torch.set_num_threads(max(1, int(cfg["cpus_per_worker"])))
    report: dict[str, Any] = {}
    try:
        if rank == 0:
            report = _rank_zero(config, trial, cfg["kwargs"], settings)
        else:
            joins = [None]
            dist.broadcast_object_list(joins, src=0)  # rank 0's ``will_train``
            if joins[0]:
                train(config, trial["seed"], checkpoint_dir=cfg["kwargs"]["checkpoint_dir"])
    except (TrialDiverged, ConfigError) as err:
        report = {FINAL_ERROR: f"{type(err).__name__}: {err}"}
    if rank:
        ray.train.report({})  # a barrier: every rank reports once
        return
    # Ray Train keeps a run's metrics only with a checkpoint: rank 0's carries its report
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "report.json").write_text(json.dumps(report))
        ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _rank_zero(config: TrainConfig, trial: dict[str, Any], kwargs: dict[str, Any],
               settings: Any) -> dict[str, Any]:
    """Rank 0: ``run_trial`` (the MLflow run, the store's progress), telling the other ranks
    first whether there is anything to train."""
    import torch.distributed as dist

    from service.job.progress import store_progress
    from service.store import Store
    from trainer.trial import run_trial

    def tell(trains: bool) -> None:
        dist.broadcast_object_list([trains], src=0)

    store = Store(settings.db_url, run_migrations=False)
    try:
        result = run_trial(config, trial["seed"], progress=store_progress(store, trial["trial_id"]),
                           will_train=tell, **kwargs)
    finally:
        store.close()
    return {RESULT: json.dumps(asdict(result))}
