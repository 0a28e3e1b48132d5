"""The source of truth: experiments, their variants and trials, in SQL (all of the service's SQL).

The controller, the Ray job's supervisor and every trial worker write here directly with the same
URL, so each write is a short transaction. SQLite runs in WAL mode with a busy timeout and takes
its write lock up front (``BEGIN IMMEDIATE``), so concurrent writers from several processes wait
their turn instead of failing. On PostgreSQL (tested against a private cluster) writers run
concurrently, so a transition locks the row it reads (``Store._trial``) and migrations take an
advisory lock.

The store, not Ray Tune's saved state, decides what still has to run: ``runnable_trials`` is what
a (re)submitted job trains, and trial state transitions are guarded so that a late write from a
stopped worker cannot resurrect a cancelled or finished trial.
"""

from __future__ import annotations

import enum
import json
import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    deferred,
    mapped_column,
    relationship,
    selectinload,
    sessionmaker,
    undefer,
)

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x61626C617465  # "ablate"
"""PostgreSQL advisory lock held while migrating (see migrations/env.py); per database."""


class TrialState(enum.StrEnum):
    """Where a trial is in its life; ``FINAL`` states never change without a user request."""

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


FINAL_STATES = frozenset(
    {TrialState.FINISHED, TrialState.FAILED, TrialState.CANCELLED, TrialState.CACHED}
)
ACTIVE_STATES = frozenset({TrialState.PENDING, TrialState.RUNNING, TrialState.RETRYING})
DONE_STATES = frozenset({TrialState.FINISHED, TrialState.CACHED})
"""States whose metrics count in a comparison."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# Names a spec generates have no length bound: a factorial variant's name joins every factor's
# level label, and the primary metric is whatever the spec says. SQLite never enforces VARCHAR
# lengths; PostgreSQL does (it refused such a spec), so there these columns are TEXT (0003).
_NAME = String(200).with_variant(Text(), "postgresql")
_METRIC = String(100).with_variant(Text(), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    design: Mapped[str] = mapped_column(String(32))
    baseline: Mapped[str] = mapped_column(_NAME)
    primary_metric: Mapped[str] = mapped_column(_METRIC)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mlflow_parent_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    job_submission_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    job_submissions: Mapped[int] = mapped_column(Integer, default=0)
    """How many jobs were submitted; the next one is ``<id>-r<job_submissions>``."""
    finalized_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    """When the comparison was logged on the MLflow parent run and that run ended."""

    variants: Mapped[list[Variant]] = relationship(
        back_populates="experiment", order_by="Variant.position", cascade="all, delete-orphan"
    )
    trials: Mapped[list[Trial]] = relationship(
        back_populates="experiment", order_by="Trial.id", cascade="all, delete-orphan"
    )


class Variant(Base):
    __tablename__ = "variants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(_NAME)
    levels: Mapped[dict[str, Any]] = mapped_column(JSON)
    overrides: Mapped[dict[str, Any]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(32))

    experiment: Mapped[Experiment] = relationship(back_populates="variants")
    trials: Mapped[list[Trial]] = relationship(back_populates="variant", order_by="Trial.seed")


class Trial(Base):
    __tablename__ = "trials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id"), index=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    trial_key: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[TrialState] = mapped_column(
        Enum(TrialState, native_enum=False, length=16,
             values_callable=lambda e: [m.value for m in e]),
        default=TrialState.PENDING,
        index=True,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    resumed_from_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """First step reported by the latest attempt after a retry (0 = started over)."""
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    history: Mapped[dict[str, Any] | None] = deferred(mapped_column(JSON, nullable=True))
    """Learning curves ``metric -> [[step, value], ...]`` of a done trial (what /compare plots).

    Deferred: only the comparison reads it, so status polls never load the curves."""
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cached_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker_node: Mapped[str | None] = mapped_column(String(200), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)

    experiment: Mapped[Experiment] = relationship(back_populates="trials")
    variant: Mapped[Variant] = relationship(back_populates="trials")


# ---- plain views handed to callers (no ORM objects escape a session) ----------------------

@dataclass
class TrialView:
    id: int
    experiment_id: str
    variant: str
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
    error: str | None
    worker_pid: int | None
    resumed_from_step: int | None
    started_at: datetime | None
    finished_at: datetime | None
    history: dict[str, list[tuple[int, float]]] | None = None
    """Only filled by ``get_experiment(..., with_history=True)``."""


@dataclass
class VariantView:
    name: str
    position: int
    levels: dict[str, str]
    overrides: dict[str, Any]
    config: dict[str, Any]
    config_hash: str
    trials: list[TrialView] = field(default_factory=list)


@dataclass
class ExperimentView:
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
    finalized_at: datetime | None = None
    variants: list[VariantView] = field(default_factory=list)

    @property
    def trials(self) -> list[TrialView]:
        return [t for v in self.variants for t in v.trials]

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in TrialState}
        for t in self.trials:
            out[t.state.value] += 1
        return out

    @property
    def status(self) -> str:
        """running > pending > cancelled > failed > finished, over its trials."""
        states = {t.state for t in self.trials}
        if states & {TrialState.RUNNING, TrialState.RETRYING}:
            return "running"
        if TrialState.PENDING in states:
            return "cancelling" if self.cancelled_at else "pending"
        if TrialState.CANCELLED in states:
            return "cancelled"
        if TrialState.FAILED in states:
            return "failed"
        return "finished"


def _trial_view(t: Trial, with_history: bool = False) -> TrialView:
    history = None
    if with_history and t.history:
        history = {k: [(int(p[0]), float(p[1])) for p in pts] for k, pts in t.history.items()}
    return TrialView(
        id=t.id, experiment_id=t.experiment_id, variant=t.variant.name, seed=t.seed,
        trial_key=t.trial_key, state=TrialState(t.state), attempts=t.attempts, step=t.step,
        total_steps=t.total_steps, metrics=dict(t.metrics or {}), mlflow_run_id=t.mlflow_run_id,
        mlflow_experiment_id=t.mlflow_experiment_id, cached_from=t.cached_from, error=t.error,
        worker_pid=t.worker_pid, resumed_from_step=t.resumed_from_step,
        started_at=t.started_at, finished_at=t.finished_at, history=history,
    )


def _experiment_view(e: Experiment, with_history: bool = False) -> ExperimentView:
    view = ExperimentView(
        id=e.id, name=e.name, description=e.description, spec=e.spec, design=e.design,
        baseline=e.baseline, primary_metric=e.primary_metric, created_at=e.created_at,
        cancelled_at=e.cancelled_at, mlflow_experiment_id=e.mlflow_experiment_id,
        mlflow_parent_run_id=e.mlflow_parent_run_id, job_submission_id=e.job_submission_id,
        job_submissions=e.job_submissions, finalized_at=e.finalized_at,
    )
    for v in e.variants:
        view.variants.append(VariantView(
            name=v.name, position=v.position, levels=dict(v.levels), overrides=v.overrides,
            config=v.config, config_hash=v.config_hash,
            trials=[_trial_view(t, with_history) for t in v.trials],
        ))
    return view


@dataclass
class NewTrial:
    seed: int
    trial_key: str


@dataclass
class NewVariant:
    name: str
    levels: dict[str, str]
    overrides: dict[str, Any]
    config: dict[str, Any]
    config_hash: str
    trials: list[NewTrial]


class NotFound(LookupError):
    """No experiment (or trial) with that id."""


# ---- engine -----------------------------------------------------------------------------

def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_without_nan(value: Any) -> str:
    """JSON for server databases: NaN and infinities become ``null``.

    Python writes them as the bare tokens ``NaN``/``Infinity``, which are not JSON, and
    PostgreSQL rejects the whole row: one NaN in a progress report would fail the write.
    SQLite stores and returns the tokens unchanged, so its engine keeps the default serializer.
    """
    return json.dumps(_finite(value), allow_nan=False)


def make_engine(url: str) -> Engine:
    """An engine; for SQLite: WAL, a 30 s busy timeout, foreign keys, write lock taken at BEGIN."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, json_serializer=_json_without_nan)
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Taking the write lock up front avoids SQLITE_BUSY on a read->write upgrade in WAL mode
        # (which the busy timeout cannot wait out); transactions here are short.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config(url: str) -> AlembicConfig:
    """Alembic's config for ``url`` with the packaged migrations (no alembic.ini needed)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the schema to the newest Alembic revision (the migrations ship in the package)."""
    cfg = alembic_config(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
    finally:
        engine.dispose()


_ROW_LOCK = {"key_share": True}
"""``SELECT ... FOR NO KEY UPDATE`` on PostgreSQL (see ``Store._trial``)."""


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

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._session() as s, s.begin():
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
    ) -> ExperimentView:
        """Insert an experiment with its variants and trials, in one transaction.

        With ``reuse_cached``, a trial whose key FINISHED in any earlier experiment becomes
        ``cached``: it links to that trial's MLflow run and copies its metrics, and never runs.
        """
        exp_id = experiment_id or new_experiment_id()
        with self.session() as s, s.no_autoflush:
            exp = Experiment(
                id=exp_id, name=name, description=description, spec=spec, design=design,
                baseline=baseline, primary_metric=primary_metric, job_submissions=0,
            )
            s.add(exp)
            keys = [t.trial_key for v in variants for t in v.trials]
            done = self._finished_by_key(s, keys) if reuse_cached else {}
            for pos, nv in enumerate(variants):
                var = Variant(
                    experiment=exp, position=pos, name=nv.name, levels=nv.levels,
                    overrides=nv.overrides, config=nv.config, config_hash=nv.config_hash,
                )
                s.add(var)
                for nt in nv.trials:
                    trial = Trial(experiment=exp, variant=var, seed=nt.seed,
                                  trial_key=nt.trial_key, state=TrialState.PENDING,
                                  attempts=0, step=0, total_steps=0, metrics={})
                    src = done.get(nt.trial_key)
                    if src is not None:
                        trial.state = TrialState.CACHED
                        trial.cached_from = src.id
                        trial.metrics = dict(src.metrics or {})
                        trial.history = src.history
                        trial.mlflow_run_id = src.mlflow_run_id
                        trial.mlflow_experiment_id = src.mlflow_experiment_id
                        trial.step = trial.total_steps = src.total_steps
                        trial.finished_at = _now()
                    s.add(trial)
            s.flush()
            return _experiment_view(exp)

    @staticmethod
    def _finished_by_key(s: Session, keys: list[str]) -> dict[str, Trial]:
        if not keys:
            return {}
        rows = s.scalars(
            select(Trial)
            .where(Trial.trial_key.in_(set(keys)), Trial.state == TrialState.FINISHED)
            .order_by(Trial.id)
        )
        return {t.trial_key: t for t in rows}

    def get_experiment(self, exp_id: str, *, with_history: bool = False) -> ExperimentView:
        """The experiment with its variants and trials, in three queries whatever its size.

        ``with_history`` also loads each trial's learning curves (only /compare needs them).
        """
        trials = selectinload(Experiment.variants).selectinload(Variant.trials)
        if with_history:
            trials = trials.options(undefer(Trial.history))
        with self.session() as s:
            exp = s.get(Experiment, exp_id, options=[trials])
            if exp is None:
                raise NotFound(exp_id)
            return _experiment_view(exp, with_history)

    def list_experiments(self, limit: int = 100) -> list[ExperimentView]:
        """Newest first, variants and trials loaded in two more queries (not one per row)."""
        trials = selectinload(Experiment.variants).selectinload(Variant.trials)
        with self.session() as s:
            rows = s.scalars(
                select(Experiment).options(trials)
                .order_by(Experiment.created_at.desc()).limit(limit)
            )
            return [_experiment_view(e) for e in rows]

    def experiments_to_finalize(self) -> list[str]:
        """Ids of experiments with no active trial left whose end step has not run (cancelled
        experiments are ended by the cancel itself)."""
        active = select(Trial.experiment_id).where(Trial.state.in_(ACTIVE_STATES))
        with self.session() as s:
            rows = s.scalars(
                select(Experiment.id).where(
                    Experiment.finalized_at.is_(None), Experiment.cancelled_at.is_(None),
                    Experiment.id.not_in(active),
                ).order_by(Experiment.created_at)
            )
            return list(rows)

    def mark_finalized(self, exp_id: str) -> None:
        with self.session() as s:
            exp = self._exp(s, exp_id)
            exp.finalized_at = exp.finalized_at or _now()

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
                for m in (Experiment, Variant, Trial)
            }

    def set_mlflow(self, exp_id: str, experiment_id: str, parent_run_id: str | None) -> None:
        with self.session() as s:
            exp = self._exp(s, exp_id)
            exp.mlflow_experiment_id = experiment_id
            exp.mlflow_parent_run_id = parent_run_id

    def record_job_submission(self, exp_id: str, submission_id: str) -> None:
        """A job was submitted for the experiment (the next one is ``<id>-r<count>``)."""
        with self.session() as s:
            exp = self._exp(s, exp_id)
            exp.job_submissions += 1
            exp.job_submission_id = submission_id

    def mark_cancel_requested(self, exp_id: str) -> None:
        with self.session() as s:
            exp = self._exp(s, exp_id)
            exp.cancelled_at = exp.cancelled_at or _now()

    def cancel_trials(self, exp_id: str) -> int:
        """Every non-final trial of the experiment -> cancelled; returns how many."""
        with self.session() as s:
            self._exp(s, exp_id)
            res = s.execute(
                update(Trial)
                .where(Trial.experiment_id == exp_id, Trial.state.in_(ACTIVE_STATES))
                .values(state=TrialState.CANCELLED, finished_at=_now(), worker_pid=None)
            )
            return res.rowcount or 0

    def retry_failed(self, exp_id: str) -> int:
        """Failed trials -> pending (attempts reset); clears a cancel request and the end step
        (the comparison changes once they finish). Returns how many."""
        with self.session() as s:
            exp = self._exp(s, exp_id)
            res = s.execute(
                update(Trial)
                .where(Trial.experiment_id == exp_id, Trial.state == TrialState.FAILED)
                .values(state=TrialState.PENDING, attempts=0, error=None, finished_at=None)
            )
            n = res.rowcount or 0
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
            return [_trial_view(t) for t in rows]

    def get_trial(self, trial_id: int) -> TrialView:
        with self.session() as s:
            t = s.get(Trial, trial_id)
            if t is None:
                raise NotFound(str(trial_id))
            return _trial_view(t)

    def mark_running(self, trial_id: int, *, worker_pid: int, worker_node: str | None = None
                     ) -> TrialView | None:
        """Start an attempt; None when the trial is no longer runnable (cancelled, finished)."""
        with self.session() as s:
            t = self._trial(s, trial_id)
            if t.state not in ACTIVE_STATES:
                return None
            t.attempts += 1
            t.state = TrialState.RUNNING
            t.worker_pid = worker_pid
            t.worker_node = worker_node
            t.started_at = t.started_at or _now()
            t.resumed_from_step = None
            return _trial_view(t)

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
                      history: dict[str, list[tuple[int, float]]] | None = None) -> bool:
        """A trial's final result; ``history`` (its learning curves) feeds /compare's plots."""
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
            t.mlflow_run_id = mlflow_run_id
            t.mlflow_experiment_id = mlflow_experiment_id
            t.step = steps
            t.total_steps = max(t.total_steps, steps)
            t.error = None
            t.worker_pid = None
            t.finished_at = _now()
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
            t.finished_at = _now()
            return True

    def fail_active(self, exp_id: str, error: str) -> int:
        """Every active trial of the experiment -> failed (a job that cannot be run again)."""
        with self.session() as s:
            res = s.execute(
                update(Trial)
                .where(Trial.experiment_id == exp_id, Trial.state.in_(ACTIVE_STATES))
                .values(state=TrialState.FAILED, error=error, finished_at=_now(), worker_pid=None)
            )
            return res.rowcount or 0

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
