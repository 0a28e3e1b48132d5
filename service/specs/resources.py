"""What a trial reserves in Ray: ``resources`` of a spec (also read by the job's driver)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.specs.schema_rules import PER_WORKER_NEEDS_WORKERS

MAX_WORKERS = 256
"""Most data-parallel workers one trial may ask for."""


class Resources(BaseModel):
    """What one trial reserves in Ray (fractions allowed): ``cpus``/``gpus`` for a trial on one
    worker; with ``workers`` > 1 the trial runs as that many data-parallel workers (a Ray Train
    ``TorchTrainer`` started from its Tune trial, ``trainer.distributed``), each reserving
    ``cpus_per_worker``/``gpus_per_worker`` (default: ``cpus``/``gpus``) on some node."""

    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra=PER_WORKER_NEEDS_WORKERS)
    cpus: float = Field(default=1.0, gt=0.0)
    gpus: float = Field(default=0.0, ge=0.0)
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS, description="data-parallel workers "
                         "per trial; each trains on data.batch_size / workers of every batch")
    cpus_per_worker: float | None = Field(default=None, gt=0.0)
    gpus_per_worker: float | None = Field(default=None, ge=0.0)

    @model_validator(mode="after")
    def _per_worker_only_with_workers(self) -> Resources:
        if self.workers == 1:
            for name in ("cpus_per_worker", "gpus_per_worker"):
                if name in self.model_fields_set:
                    raise ValueError(f"{name}: applies only with workers > 1 (one worker "
                                     f"reserves resources.{name.removesuffix('_per_worker')})")
        return self

    def per_worker(self) -> dict[str, float]:
        """What each worker reserves, in the spec's names (``cpus``, ``gpus``)."""
        if self.workers == 1:
            return {"cpus": self.cpus, "gpus": self.gpus}
        cpus = self.cpus if self.cpus_per_worker is None else self.cpus_per_worker
        gpus = self.gpus if self.gpus_per_worker is None else self.gpus_per_worker
        return {"cpus": cpus, "gpus": gpus}

    @property
    def trial_cpus(self) -> float:
        """CPUs one trial holds in all (every worker's)."""
        return self.per_worker()["cpus"] * self.workers
