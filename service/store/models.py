"""The SQLAlchemy 2 ORM tables: Experiment -> Variant -> Trial -> Evaluation (the schema Alembic
migrates to).

The trial states and their sets live in ``service.states`` (no SQLAlchemy there, so the CLI and
the job's driver read them cheaply); they are re-exported here with the tables that store them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

from service.states import ACTIVE_STATES, RESULT_STATES, EvaluationState, TrialState

__all__ = ["ACTIVE_STATES", "RESULT_STATES", "Base", "Evaluation", "EvaluationState", "Experiment",
           "Trial", "TrialState", "Variant", "now"]


def now() -> datetime:
    """Naive UTC: what the DateTime columns hold on both SQLite and PostgreSQL."""
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
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mlflow_parent_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    job_submission_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    job_submissions: Mapped[int] = mapped_column(Integer, default=0)
    """How many jobs were submitted; the next one is ``<id>-r<job_submissions>``."""
    job_resubmits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many of them the reconciler submitted for a lost job (``max_job_resubmits`` caps
    these only: a request that adds work, an evaluation or a look, is no loss)."""
    finalized_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    """When the comparison was logged on the MLflow parent run and that run ended."""
    idempotency_key: Mapped[str | None] = mapped_column(
        String(200), nullable=True, unique=True, index=True
    )
    """The client's ``Idempotency-Key`` of the POST that created it (unique: a retried POST
    finds this experiment instead of making a second; two racing ones cannot both insert)."""

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
    __table_args__ = (Index("ux_trials_variant_seed", "variant_id", "seed", unique=True),)

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
    # what the trial's seed controlled (trainer.fingerprints): /compare verifies pairing with it
    fingerprints: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker_node: Mapped[str | None] = mapped_column(String(200), nullable=True)
    worker_ray_node: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now, onupdate=now)

    experiment: Mapped[Experiment] = relationship(back_populates="trials")
    variant: Mapped[Variant] = relationship(back_populates="trials")

    @property
    def loaded_history(self) -> dict[str, Any] | None:
        """``history`` if this row's query loaded it (``undefer``), else None.

        What ``TrialView`` reads: touching ``history`` itself would load the deferred curves
        with one query per trial, which is exactly what status polls must not do."""
        if "history" in sa_inspect(self).unloaded:
            return None
        return self.history or None


class Evaluation(Base):
    """One downstream evaluation of one trial: a task under its settings, keyed like the trial
    (``trainer.downstream.keys.evaluation_key``). Its own row, so it has a state of its own, is
    asked for after the trial finished and is never run twice (unique per trial, task, key)."""

    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("trial_id", "task", "evaluation_key",
                                       name="ux_evaluations_trial_task_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id"), index=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"), index=True)
    task: Mapped[str] = mapped_column(String(32))
    evaluation_key: Mapped[str] = mapped_column(String(64))
    state: Mapped[EvaluationState] = mapped_column(
        Enum(EvaluationState, native_enum=False, length=16,
             values_callable=lambda e: [m.value for m in e]),
        default=EvaluationState.PENDING, index=True,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """The task's metrics under the trial's names (``vqa_accuracy``, ...)."""
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now, onupdate=now)
