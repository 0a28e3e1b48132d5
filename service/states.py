"""Trial states, experiment statuses and the sets they fall into: the one definition of each.

Plain Python on purpose: the CLI (a thin HTTP client) and the Ray job's driver read these without
importing SQLAlchemy. The store's ORM column and its views use the same enum.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class TrialState(enum.StrEnum):
    """Where a trial is in its life; a state outside ``ACTIVE_STATES`` is final: it changes only
    on a user request (retry)."""

    PENDING = "pending"
    """Created and waiting for a worker (or for its job to be submitted)."""
    RUNNING = "running"
    """A worker is training it now; ``step``/``total_steps``/``metrics`` show how far."""
    RETRYING = "retrying"
    """A recoverable failure (worker died, OOM, transient error): it resumes from its checkpoint."""
    FINISHED = "finished"
    """Trained and evaluated in this experiment; final metrics and MLflow run recorded."""
    FAILED = "failed"
    """Gave up: diverged, invalid config, or retries exhausted; ``error`` says why. Final."""
    CANCELLED = "cancelled"
    """Stopped by a cancel request before it finished. Final."""
    CACHED = "cached"
    """Its trial key already finished in an earlier experiment; that run and metrics are reused."""


ACTIVE_STATES = frozenset({TrialState.PENDING, TrialState.RUNNING, TrialState.RETRYING})
"""Still to be trained: what a (re)submitted job runs, and the only states a worker may change."""

RESULT_STATES = frozenset({TrialState.FINISHED, TrialState.CACHED})
"""Trials with a result: their metrics count in a comparison and their progress is complete."""

class EvaluationState(enum.StrEnum):
    """Where one downstream evaluation (a trial x task x settings) is; ``done`` and ``failed``
    are final, as a trial's are."""

    PENDING = "pending"
    """Asked for (``POST /experiments/<id>/evaluate``), waiting for the experiment's job."""
    RUNNING = "running"
    """A worker is fine-tuning (or scoring) it on the trial's kept trunk."""
    DONE = "done"
    """Its metrics are stored here, on the trial, and on the trial's MLflow run."""
    FAILED = "failed"
    """Gave up (no kept trunk, retries exhausted); ``error`` says why."""


ACTIVE_EVALUATION_STATES = frozenset({EvaluationState.PENDING, EvaluationState.RUNNING})
"""Evaluations a (re)submitted job still runs."""

TERMINAL_STATUSES = frozenset({"finished", "failed", "cancelled"})
"""Experiment statuses (``experiment_status``) after which nothing runs without a user request."""


def experiment_status(states: Iterable[TrialState], cancel_requested: bool) -> str:
    """An experiment's status from its trials' states: running > pending (or cancelling, once a
    cancel was requested) > cancelled > failed > finished."""
    present = set(states)
    if present & {TrialState.RUNNING, TrialState.RETRYING}:
        return "running"
    if TrialState.PENDING in present:
        return "cancelling" if cancel_requested else "pending"
    if TrialState.CANCELLED in present:
        return "cancelled"
    if TrialState.FAILED in present:
        return "failed"
    return "finished"


def trial_progress(state: TrialState, step: int, total_steps: int) -> float:
    """How far one trial is, in [0, 1]: complete once it has a result, else its step fraction."""
    if state in RESULT_STATES:
        return 1.0
    return round(step / total_steps, 4) if total_steps else 0.0


def mean_progress(progresses: Iterable[float]) -> float:
    """Progress of a group of trials (a variant, an experiment): the mean of theirs (0 if none)."""
    values = list(progresses)
    return round(sum(values) / max(len(values), 1), 4)
