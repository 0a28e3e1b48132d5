"""Downstream evaluations in the store: asked for, claimed by a worker, done or failed.

A separate unit from the trial (``Evaluation`` rows, migration 0009) so that a task added to a
finished experiment is recorded before it runs, resumes after a crash and never runs twice: the
row is unique per (trial, task, evaluation key), and every write here finds the row by that
triple before inserting. A done evaluation's metrics are also merged into its trial's metrics
(and so stamp the trial's ``updated_at``), which is what /compare reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.states import ACTIVE_EVALUATION_STATES, RESULT_STATES, EvaluationState
from service.store.models import Evaluation, Experiment, Trial, Variant, now
from service.store.views import EvaluationView

SessionFactory = Callable[..., AbstractContextManager[Session]]

__all__ = ["EvaluationTarget", "Evaluations", "WantedEvaluation", "record_results"]


@dataclass(frozen=True)
class WantedEvaluation:
    """One evaluation a request asks for."""

    trial_id: int
    task: str
    evaluation_key: str


@dataclass(frozen=True)
class EvaluationTarget:
    """Where a trial's pretraining ran: a cached trial's evaluation runs on its source's kept
    trunk and MLflow run (same trial key), not on a copy."""

    experiment_id: str
    trial_key: str
    mlflow_experiment_id: str | None


def _row(s: Session, trial_id: int, task: str, key: str) -> Evaluation | None:
    return s.scalar(select(Evaluation).where(
        Evaluation.trial_id == trial_id, Evaluation.task == task,
        Evaluation.evaluation_key == key))


def record_results(s: Session, trial: Trial,
                   results: dict[str, tuple[str, dict[str, float]]]) -> None:
    """``task -> (evaluation key, metrics)`` done for ``trial``, in the caller's transaction:
    an existing row (pending, running, even failed) becomes done, a missing one is inserted;
    the metrics are merged into the trial's."""
    for task, (key, metrics) in results.items():
        row = _row(s, trial.id, task, key)
        if row is None:
            row = Evaluation(experiment_id=trial.experiment_id, trial_id=trial.id, task=task,
                             evaluation_key=key, attempts=0)
            s.add(row)
        row.state = EvaluationState.DONE
        row.metrics = {k: float(v) for k, v in metrics.items()}
        row.error = None
        row.finished_at = now()
    merged = {k: float(v) for _, m in results.values() for k, v in m.items()}
    if merged:
        trial.metrics = {**(trial.metrics or {}), **merged}


class Evaluations:
    """Every query and transition of the evaluations table (``Store.evaluations``)."""

    def __init__(self, session: SessionFactory) -> None:
        self._session = session

    # ---- asked for (the controller) ---------------------------------------------------------
    def request(self, exp_id: str, wanted: Iterable[WantedEvaluation], *,
                configs: dict[str, dict[str, Any]], spec: dict[str, Any]) -> int:
        """Store the variants' extended configs and spec and insert the ``wanted`` evaluations
        the experiment lacks, in one transaction; returns how many were inserted. Idempotent:
        asked twice, the second inserts nothing. Reopens the experiment's end step when it
        inserted any or changed the spec (the comparison changes)."""
        wanted = list(wanted)
        for attempt in range(2):
            try:
                with self._session() as s:
                    exp = s.get(Experiment, exp_id, with_for_update={"key_share": True})
                    if exp is None:
                        raise LookupError(exp_id)
                    for v in s.scalars(select(Variant).where(Variant.experiment_id == exp_id)):
                        if v.name in configs:
                            v.config = configs[v.name]
                    reopen = exp.spec != spec
                    exp.spec = spec
                    added = 0
                    for w in wanted:
                        if _row(s, w.trial_id, w.task, w.evaluation_key) is None:
                            s.add(Evaluation(experiment_id=exp_id, trial_id=w.trial_id,
                                             task=w.task, evaluation_key=w.evaluation_key,
                                             state=EvaluationState.PENDING, attempts=0,
                                             metrics={}))
                            added += 1
                    if added or reopen:
                        exp.finalized_at = None
                    return added
            except IntegrityError:  # a concurrent request inserted one first: look again
                if attempt:
                    raise
        return 0

    # ---- read ----------------------------------------------------------------------------
    def for_experiment(self, exp_id: str) -> list[EvaluationView]:
        with self._session(read_only=True) as s:
            rows = s.scalars(select(Evaluation).where(Evaluation.experiment_id == exp_id)
                             .order_by(Evaluation.trial_id, Evaluation.id))
            return [EvaluationView.model_validate(r) for r in rows]

    def runnable(self, exp_id: str) -> list[EvaluationView]:
        """Pending and interrupted running evaluations of trials with a result."""
        with self._session() as s:
            rows = s.scalars(
                select(Evaluation).join(Trial, Trial.id == Evaluation.trial_id)
                .where(Evaluation.experiment_id == exp_id,
                       Evaluation.state.in_(ACTIVE_EVALUATION_STATES),
                       Trial.state.in_(RESULT_STATES))
                .order_by(Evaluation.trial_id, Evaluation.id))
            return [EvaluationView.model_validate(r) for r in rows]

    def experiments_with_active(self) -> list[str]:
        with self._session() as s:
            rows = s.scalars(select(Evaluation.experiment_id)
                             .where(Evaluation.state.in_(ACTIVE_EVALUATION_STATES)).distinct())
            return sorted(rows)

    def target(self, trial_id: int) -> EvaluationTarget:
        """The trial whose pretraining ran (a cached trial's source, followed to the end)."""
        with self._session(read_only=True) as s:
            trial = s.get(Trial, trial_id)
            seen: set[int] = set()
            while trial is not None and trial.cached_from is not None and trial.id not in seen:
                seen.add(trial.id)
                trial = s.get(Trial, trial.cached_from)
            if trial is None:
                raise LookupError(str(trial_id))
            return EvaluationTarget(trial.experiment_id, trial.trial_key,
                                    trial.mlflow_experiment_id)

    # ---- worked on (the job) --------------------------------------------------------------
    def mark_running(self, eval_id: int) -> EvaluationView | None:
        """Claim an attempt; None when the evaluation is no longer to run (done, failed)."""
        with self._session() as s:
            row = s.get(Evaluation, eval_id, with_for_update={"key_share": True})
            if row is None or row.state not in ACTIVE_EVALUATION_STATES:
                return None
            row.state = EvaluationState.RUNNING
            row.attempts += 1
            row.started_at = row.started_at or now()
            return EvaluationView.model_validate(row)

    def mark_done(self, trial_id: int, task: str, key: str, metrics: dict[str, float]) -> None:
        """The evaluation's result, on its row and merged into its trial's metrics."""
        with self._session() as s:
            trial = s.get(Trial, trial_id, with_for_update={"key_share": True})
            if trial is None:
                raise LookupError(str(trial_id))
            record_results(s, trial, {task: (key, metrics)})

    def mark_pending(self, eval_id: int, error: str) -> bool:
        """A recoverable failure: the next attempt (or job) runs it again."""
        return self._end(eval_id, EvaluationState.PENDING, error)

    def mark_failed(self, eval_id: int, error: str) -> bool:
        return self._end(eval_id, EvaluationState.FAILED, error)

    def _end(self, eval_id: int, state: EvaluationState, error: str) -> bool:
        with self._session() as s:
            row = s.get(Evaluation, eval_id, with_for_update={"key_share": True})
            if row is None or row.state not in ACTIVE_EVALUATION_STATES:
                return False
            row.state = state
            row.error = error
            if state == EvaluationState.FAILED:
                row.finished_at = now()
            return True

    def fail_active(self, exp_id: str, error: str) -> int:
        """Every active evaluation of the experiment -> failed (its job cannot run again)."""
        with self._session() as s:
            res = s.execute(update(Evaluation)
                            .where(Evaluation.experiment_id == exp_id,
                                   Evaluation.state.in_(ACTIVE_EVALUATION_STATES))
                            .values(state=EvaluationState.FAILED, error=error,
                                    finished_at=now()))
            return int(getattr(res, "rowcount", 0) or 0)
