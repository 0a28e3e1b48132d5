"""The parts of a spec that say how to run it, not what to run: metrics, resources, concurrency.

Kept apart from ``service.specs`` (which validates configs through ``trainer.config`` and so
imports torch) because the experiment's Ray Job reads them first thing: the driver should reach
``Tuner.fit`` without paying for torch (about a second per experiment on 2 cores).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_REPORTED = ["mean_recall", "t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricsSpec(_Strict):
    primary: str = "mean_recall"
    reported: list[str] = Field(default_factory=lambda: list(DEFAULT_REPORTED))


class Resources(_Strict):
    """What one trial reserves in Ray (fractions allowed)."""

    cpus: float = Field(default=1.0, gt=0.0)
    gpus: float = Field(default=0.0, ge=0.0)


class RunOptions(BaseModel):
    """What the supervisor reads from a stored spec; the rest of the spec is ignored here."""

    model_config = ConfigDict(extra="ignore")

    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(default=None, ge=1)

    def tracked_metrics(self) -> list[str]:
        """Primary first, then the reported ones, each once."""
        return list(dict.fromkeys([self.metrics.primary, *self.metrics.reported]))
