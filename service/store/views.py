"""Read-only views of the ORM rows: what the store hands its callers.

No ORM object escapes a session (a detached row would lazy-load, or fail, on first touch), so
each query turns its rows into these before the session closes. They are derived from the ORM
by pydantic (``from_attributes``): a column added to a table needs one line here, not a
hand-written copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import AliasPath, BaseModel, ConfigDict, Field

from service.states import (
    EvaluationState,
    TrialState,
    experiment_status,
    mean_progress,
    trial_progress,
)

__all__ = ["EvaluationView", "ExperimentView", "TrialView", "VariantView"]


class TrialView(BaseModel):
    """One trial (``Trial`` row), named by its variant."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    experiment_id: str
    variant: str = Field(validation_alias=AliasPath("variant", "name"))
    seed: int
    trial_key: str
    state: TrialState
    attempts: int
    step: int
    total_steps: int
    metrics: dict[str, Any]
    mlflow_run_id: str | None
    mlflow_experiment_id: str | None
    cached_from: int | None
    fingerprints: dict[str, str] | None = None
    error: str | None
    worker_pid: int | None
    worker_node: str | None = None
    """Host name of the machine (or container) of the latest attempt; kept after it ends."""
    worker_ray_node: str | None = None
    """Ray's id of the node of the latest attempt (Ray's dashboard and state API name it)."""
    resumed_from_step: int | None
    started_at: datetime | None
    finished_at: datetime | None
    history: dict[str, list[tuple[int, float]]] | None = Field(
        None, validation_alias="loaded_history"
    )
    """Learning curves; None unless the query loaded them
    (``get_experiment(..., with_history=True)`` does)."""

    @property
    def progress(self) -> float:
        return trial_progress(self.state, self.step, self.total_steps)


class EvaluationView(BaseModel):
    """One downstream evaluation (``Evaluation`` row)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    experiment_id: str
    trial_id: int
    task: str
    evaluation_key: str
    state: EvaluationState
    attempts: int
    metrics: dict[str, Any]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def evaluation_counts(evaluations: Iterable[EvaluationView]) -> dict[str, int]:
    """Evaluations per state, every state present (0 if none), as ``ExperimentView.counts``."""
    out = {s.value: 0 for s in EvaluationState}
    for e in evaluations:
        out[e.state.value] += 1
    return out


class VariantView(BaseModel):
    """One variant (``Variant`` row) with its trials in seed order."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    position: int
    levels: dict[str, str]
    overrides: dict[str, Any]
    config: dict[str, Any]
    config_hash: str
    trials: list[TrialView] = Field(default_factory=list)

    @property
    def progress(self) -> float:
        return mean_progress(t.progress for t in self.trials)


class ExperimentView(BaseModel):
    """One experiment (``Experiment`` row) with its variants in spec order."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str
    spec: dict[str, Any]
    design: str
    baseline: str
    primary_metric: str
    created_at: datetime
    cancelled_at: datetime | None
    mlflow_experiment_id: str | None
    mlflow_parent_run_id: str | None
    job_submission_id: str | None
    job_submissions: int
    job_resubmits: int = 0
    finalized_at: datetime | None = None
    idempotency_key: str | None = None
    variants: list[VariantView] = Field(default_factory=list)

    @property
    def trials(self) -> list[TrialView]:
        return [t for v in self.variants for t in v.trials]

    def counts(self) -> dict[str, int]:
        """Trials per state, every state present (0 if none)."""
        out = {s.value: 0 for s in TrialState}
        for t in self.trials:
            out[t.state.value] += 1
        return out

    @property
    def trials_status(self) -> str:
        """The status the trials' states alone give (what the end step records)."""
        return experiment_status((t.state for t in self.trials), self.cancelled_at is not None)

    @property
    def status(self) -> str:
        """From the trials' states; an adaptive experiment whose trials are all done is still
        running until its end step (finalize) has run: a next look may be about to add seeds."""
        status = self.trials_status
        adaptive = isinstance(self.spec.get("seeds"), dict)
        if status == "finished" and adaptive and self.finalized_at is None:
            return "running"
        return status

    @property
    def progress(self) -> float:
        return mean_progress(t.progress for t in self.trials)
