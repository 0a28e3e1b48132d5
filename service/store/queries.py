"""``Store``: every query and state transition of experiments, variants and trials.

The store, not Ray Tune's saved state, decides what still has to run: ``runnable_trials`` is what
a (re)submitted job trains, and trial state transitions are guarded so that a late write from a
stopped worker cannot resurrect a cancelled or finished trial. On PostgreSQL writers run
concurrently, so a transition locks the row it reads (``Store._trial``).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, Update, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker, undefer

from service.states import ACTIVE_EVALUATION_STATES, ACTIVE_STATES, TrialState
from service.store.engine import ONE_STATEMENT, READ_ONLY, make_engine, migrate
from service.store.evaluations import Evaluations, record_results
from service.store.inputs import NewTrial, NewVariant
from service.store.models import Evaluation, Experiment, Trial, Variant, now
from service.store.revision import Revision, Revisions
from service.store.seeds import add_trials, finished_by_key, trial_row
from service.store.views import ExperimentView, TrialView

__all__ = ["KeyTaken", "NewTrial", "NewVariant", "NotFound", "Store", "new_experiment_id"]


class NotFound(LookupError):
    """No experiment (or trial) with that id."""


class KeyTaken(LookupError):
    """Another experiment already has this idempotency key (it won the race to insert)."""


_ROW_LOCK = {"key_share": True}
"""``SELECT ... FOR NO KEY UPDATE`` on PostgreSQL (see ``Store._trial``)."""


def _updated(s: Session, stmt: Update) -> int:
    """Rows an UPDATE changed (``Session.execute`` types its result as a plain ``Result``)."""
    return cast(CursorResult[Any], s.execute(stmt)).rowcount or 0


def new_experiment_id() -> str:
    return "exp-" + secrets.token_hex(6)


class Store:
    """All reads and writes of experiments, variants and trials."""

    def __init__(self, url: str, *, run_migrations: bool = True) -> None:
        self.url = url
        if run_migrations:
            migrate(url)
        self.engine = make_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._read_session = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}),
                                          expire_on_commit=False)
        self.evaluations = Evaluations(self.session)
        """Downstream evaluations (``service.store.evaluations``)."""
        self.revisions = Revisions(
            self.engine.execution_options(**{READ_ONLY: True, ONE_STATEMENT: True}))

    def close(self) -> None:
        self.revisions.close()
        self.engine.dispose()

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """A transaction; a ``read_only`` one takes no write lock on SQLite (a WAL snapshot)."""
        with (self._read_session if read_only else self._session)() as s, s.begin():
            yield s

    # ---- experiments ------------------------------------------------------------------------
    def create_experiment(
        self,
        *,
        name: str,
        description: str,
        spec: dict[str, Any],
        design: str,
        baseline: str,
        primary_metric: str,
        variants: list[NewVariant],
        reuse_cached: bool = True,
        experiment_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> ExperimentView:
        """Insert an experiment with its variants and trials, in one transaction.

        With ``reuse_cached``, a trial whose key FINISHED in any earlier experiment becomes
        ``cached``: it links to that trial's MLflow run and copies its metrics, and never runs.
        Raises ``KeyTaken`` when another experiment has ``idempotency_key`` (nothing inserted).
        """
        try:
            return self._insert_experiment(
                Experiment(id=experiment_id or new_experiment_id(), name=name,
                           description=description, spec=spec, design=design, baseline=baseline,
                           primary_metric=primary_metric, job_submissions=0, job_resubmits=0,
                           idempotency_key=idempotency_key),
                variants, reuse_cached)
        except IntegrityError:  # the unique index decides a race that the lookup did not see
            if idempotency_key is None or self.experiment_by_key(idempotency_key) is None:
                raise
            raise KeyTaken(idempotency_key) from None

    def _insert_experiment(self, exp: Experiment, variants: list[NewVariant],
                           reuse_cached: bool) -> ExperimentView:
        with self.session() as s, s.no_autoflush:
            s.add(exp)
            keys = [t.trial_key for v in variants for t in v.trials]
            done = finished_by_key(s, keys) if reuse_cached else {}
            for pos, nv in enumerate(variants):
                var = Variant(
                    experiment=exp, position=pos, name=nv.name, levels=nv.levels,
                    overrides=nv.overrides, config=nv.config, config_hash=nv.config_hash,
                )
                s.add(var)
                for nt in nv.trials:
                    s.add(trial_row(exp, var, nt, done))
            s.flush()
            return ExperimentView.model_validate(exp)

    def add_trials(self, exp_id: str, wanted: dict[str, list[NewTrial]],
                   reuse_cached: bool = True) -> int:
        """Add the trials ``wanted`` (variant name -> trials) that the experiment lacks (the
        seeds of an adaptive experiment's next look); returns how many. Idempotent; of two
        concurrent adds of one seed the unique index lets one in, and the other tries again."""
        for attempt in range(2):
            try:
                with self.session() as s:
                    return add_trials(s, exp_id, wanted, reuse_cached)
            except IntegrityError:
                if attempt:
                    raise
        return 0

    def experiment_by_key(self, idempotency_key: str) -> ExperimentView | None:
        """The experiment a POST with this ``Idempotency-Key`` created, if any."""
        with self.session(read_only=True) as s:
            exp_id = s.scalar(select(Experiment.id)
                              .where(Experiment.idempotency_key == idempotency_key))
        return None if exp_id is None else self.get_experiment(exp_id)

    def get_experiment(self, exp_id: str, *, with_history: bool = False) -> ExperimentView:
        """The experiment with its variants and trials, in three queries whatever its size.

        ``with_history`` also loads each trial's learning curves (only /compare needs them).
        """
        trials = selectinload(Experiment.variants).selectinload(Variant.trials)
        if with_history:
            trials = trials.options(undefer(Trial.history))
        with self.session(read_only=True) as s:
            exp = s.get(Experiment, exp_id, options=[trials])
            if exp is None:
                raise NotFound(exp_id)
            return ExperimentView.model_validate(exp)

    def revision(self, exp_id: str) -> Revision:
        """Changes whenever anything stored about the experiment does (``store.revision``)."""
        rev = self.revisions.read(exp_id)
        if rev is None:
            raise NotFound(exp_id)
        return rev

    def list_experiments(self, limit: int = 100) -> list[ExperimentView]:
        """Newest first, variants and trials loaded in two more queries (not one per row)."""
        trials = selectinload(Experiment.variants).selectinload(Variant.trials)
        with self.session(read_only=True) as s:
            rows = s.scalars(
                select(Experiment).options(trials)
                .order_by(Experiment.created_at.desc()).limit(limit)
            )
            return [ExperimentView.model_validate(e) for e in rows]

    def experiments_to_finalize(self) -> list[str]:
        """Ids of experiments with no active trial or evaluation left whose end step has not
        run (cancelled experiments are ended by the cancel itself)."""
        active = select(Trial.experiment_id).where(Trial.state.in_(ACTIVE_STATES))
        evaluating = select(Evaluation.experiment_id).where(
            Evaluation.state.in_(ACTIVE_EVALUATION_STATES))
        with self.session() as s:
            rows = s.scalars(
                select(Experiment.id).where(
                    Experiment.finalized_at.is_(None), Experiment.cancelled_at.is_(None),
                    Experiment.id.not_in(active), Experiment.id.not_in(evaluating),
                ).order_by(Experiment.created_at)
            )
            return list(rows)

    def mark_finalized(self, exp_id: str) -> None:
        with self.session() as s:
            exp = self._exp(s, exp_id)
            exp.finalized_at = exp.finalized_at or now()

    def experiments_with_active_trials(self) -> list[str]:
        """Ids of experiments with pending/running/retrying trials (what reconciling looks at)."""
        with self.session() as s:
            rows = s.scalars(
                select(Trial.experiment_id).where(Trial.state.in_(ACTIVE_STATES)).distinct()
            )
            return sorted(rows)

    def counts(self) -> dict[str, int]:
        """Rows per table (tests use it to show a rejected spec changed nothing)."""
        with self.session() as s:
            return {
                m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0
                for m in (Experiment, Variant, Trial, Evaluation)
            }

    def set_mlflow(self, exp_id: str, experiment_id: str, parent_run_id: str | None) -> None:
        with self.session() as s:
            exp = self._exp(s, exp_id)
            exp.mlflow_experiment_id = experiment_id
            exp.mlflow_parent_run_id = parent_run_id

    def record_job_submission(self, exp_id: str, submission_id: str,
                              resubmit: bool = False) -> None:
        """A job was submitted for the experiment (the next one is ``<id>-r<count>``);
        ``resubmit``: by the reconciler, for a job that was lost."""
        with self.session() as s:
            exp = self._exp(s, exp_id)
            exp.job_submissions += 1
            exp.job_resubmits += int(resubmit)
            exp.job_submission_id = submission_id

    def mark_cancel_requested(self, exp_id: str) -> None:
        with self.session() as s:
            exp = self._exp(s, exp_id)
            exp.cancelled_at = exp.cancelled_at or now()

    def cancel_trials(self, exp_id: str) -> int:
        """Every non-final trial of the experiment -> cancelled; returns how many."""
        with self.session() as s:
            self._exp(s, exp_id)
            return _updated(s, update(Trial)
                            .where(Trial.experiment_id == exp_id, Trial.state.in_(ACTIVE_STATES))
                            .values(state=TrialState.CANCELLED, finished_at=now(), worker_pid=None))

    def retry_failed(self, exp_id: str) -> int:
        """Failed trials -> pending (attempts reset); clears a cancel request and the end step
        (the comparison changes once they finish). Returns how many."""
        with self.session() as s:
            exp = self._exp(s, exp_id)
            n = _updated(s, update(Trial)
                         .where(Trial.experiment_id == exp_id, Trial.state == TrialState.FAILED)
                         .values(state=TrialState.PENDING, attempts=0, error=None,
                                 finished_at=None))
            if n:
                exp.cancelled_at = None
                exp.finalized_at = None  # open again: its end step runs again when done
            return n

    # ---- trials (written by the supervisor and the workers) ---------------------------------
    def runnable_trials(self, exp_id: str) -> list[TrialView]:
        """What a job for this experiment must train: pending, retrying and interrupted running."""
        with self.session() as s:
            rows = s.scalars(
                select(Trial)
                .where(Trial.experiment_id == exp_id, Trial.state.in_(ACTIVE_STATES))
                .order_by(Trial.id)
            )
            return [TrialView.model_validate(t) for t in rows]

    def get_trial(self, trial_id: int) -> TrialView:
        with self.session(read_only=True) as s:
            t = s.get(Trial, trial_id)
            if t is None:
                raise NotFound(str(trial_id))
            return TrialView.model_validate(t)

    def mark_running(self, trial_id: int, *, worker_pid: int, worker_node: str | None = None,
                     worker_ray_node: str | None = None) -> TrialView | None:
        """Start an attempt; None when the trial is no longer runnable (cancelled, finished)."""
        with self.session() as s:
            t = self._trial(s, trial_id)
            if t.state not in ACTIVE_STATES:
                return None
            t.attempts += 1
            t.state = TrialState.RUNNING
            t.worker_pid = worker_pid
            t.worker_node = worker_node
            t.worker_ray_node = worker_ray_node
            t.started_at = t.started_at or now()
            t.resumed_from_step = None
            return TrialView.model_validate(t)

    def update_progress(self, trial_id: int, step: int, total_steps: int,
                        metrics: dict[str, float]) -> None:
        with self.session() as s:
            t = self._trial(s, trial_id)
            if t.state != TrialState.RUNNING:
                return
            if t.attempts > 1 and t.resumed_from_step is None:
                t.resumed_from_step = step
            t.step = step
            t.total_steps = total_steps
            t.metrics = {**(t.metrics or {}), **{k: float(v) for k, v in metrics.items()}}

    def mark_finished(self, trial_id: int, *, metrics: dict[str, float], mlflow_run_id: str,
                      mlflow_experiment_id: str | None, steps: int,
                      history: dict[str, list[tuple[int, float]]] | None = None,
                      fingerprints: dict[str, str] | None = None,
                      evaluations: dict[str, tuple[str, dict[str, float]]] | None = None) -> bool:
        """A trial's final result; ``history`` (its learning curves) feeds /compare's plots,
        ``fingerprints`` its check that paired arms shared their randomness, ``evaluations``
        (task -> key, metrics) its downstream evaluations' rows, in the same transaction."""
        with self.session() as s:
            t = self._trial(s, trial_id)
            if t.state not in ACTIVE_STATES:
                return False
            t.state = TrialState.FINISHED
            t.metrics = {k: float(v) for k, v in metrics.items()}
            if history is not None:
                t.history = {  # finite points only: NaN is not JSON (PostgreSQL refuses it)
                    k: [[int(st), float(v)] for st, v in pts if math.isfinite(v)]
                    for k, pts in history.items()
                }
            t.fingerprints = dict(fingerprints) if fingerprints is not None else None
            t.mlflow_run_id = mlflow_run_id
            t.mlflow_experiment_id = mlflow_experiment_id
            t.step = steps
            t.total_steps = max(t.total_steps, steps)
            t.error = None
            t.worker_pid = None
            t.finished_at = now()
            record_results(s, t, evaluations or {})
            return True

    def mark_retrying(self, trial_id: int, error: str, *, only_if_running: bool = False) -> bool:
        """A recoverable failure; ``only_if_running`` keeps a message the worker wrote itself."""
        with self.session() as s:
            t = self._trial(s, trial_id)
            if t.state not in ACTIVE_STATES:
                return False
            if only_if_running and t.state != TrialState.RUNNING:
                return False
            t.state = TrialState.RETRYING
            t.error = error
            t.worker_pid = None
            return True

    def mark_failed(self, trial_id: int, error: str) -> bool:
        with self.session() as s:
            t = self._trial(s, trial_id)
            if t.state not in ACTIVE_STATES:
                return False
            t.state = TrialState.FAILED
            t.error = error
            t.worker_pid = None
            t.finished_at = now()
            return True

    def fail_active(self, exp_id: str, error: str) -> int:
        """Every active trial of the experiment -> failed (a job that cannot be run again)."""
        with self.session() as s:
            return _updated(s, update(Trial)
                            .where(Trial.experiment_id == exp_id, Trial.state.in_(ACTIVE_STATES))
                            .values(state=TrialState.FAILED, error=error, finished_at=now(),
                                    worker_pid=None))

    # ---- helpers ---------------------------------------------------------------------------
    # Both load a row that the caller then changes based on what it read (a guarded transition,
    # ``attempts += 1``), so both lock it for the rest of the transaction. On PostgreSQL (READ
    # COMMITTED) two writers would otherwise both read "running" and both win, or lose an
    # increment; ``FOR NO KEY UPDATE`` is the lock an UPDATE of non-key columns takes anyway, so
    # it blocks only such writers, never readers or inserts referencing the row. SQLite has no
    # row locks and SQLAlchemy renders nothing there: its writers are already serialised by
    # ``BEGIN IMMEDIATE``.
    @staticmethod
    def _exp(s: Session, exp_id: str) -> Experiment:
        exp = s.get(Experiment, exp_id, with_for_update=_ROW_LOCK)
        if exp is None:
            raise NotFound(exp_id)
        return exp

    @staticmethod
    def _trial(s: Session, trial_id: int) -> Trial:
        t = s.get(Trial, trial_id, with_for_update=_ROW_LOCK)
        if t is None:
            raise NotFound(str(trial_id))
        return t
