"""The HTTP contract: response bodies, and how a stored experiment is shaped into them.

Kept apart from the routes so the contract reads in one place (and in the OpenAPI schema).
Progress comes from the store's views (``service.states``: one definition for a trial, a
variant, an experiment and the experiment list).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from service.planning.adaptive import AdaptivePlan
from service.planning.downstream import DownstreamPlan, plan_downstream
from service.planning.power import PowerPlan
from service.settings import Settings
from service.store import EvaluationView, ExperimentView, NewVariant, TrialView
from service.store.views import evaluation_counts
from service.submit import Plan, Submission
from service.tracking.names import experiment_url
from service.views import run_url


def _utc(value: datetime) -> datetime:
    """The store keeps naive UTC (SQLite has no time zones); RFC 3339 needs the offset."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_utc)]
"""A timestamp as the API sends it: ``2025-01-01T12:00:00Z``, never without a zone."""


class FieldError(BaseModel):
    field: str
    reason: str


# Every 4xx a client can cause (a comment, not a docstring: that would change the schema).
class ErrorBody(BaseModel):
    detail: list[FieldError]


class PlannedVariantOut(BaseModel):
    name: str
    levels: dict[str, str]
    overrides: dict[str, Any]
    config_hash: str
    trial_keys: dict[int, str]
    """seed -> trial key"""


class DryRunOut(BaseModel):
    dry_run: Literal[True] = True
    name: str
    design: str
    baseline: str
    seeds: list[int]
    """The seeds every arm runs first (an adaptive spec's initial seeds)."""
    variants: list[PlannedVariantOut]
    trials: int
    """Trials planned now (an adaptive spec's first look; ``adaptive`` says how far it grows)."""
    adaptive: AdaptivePlan | None = None
    """Adaptive seeds only: the schedule, looks, stopping rule, trials at the first look and at
    most; with ``delta`` and ``sd`` or ``prior`` also the expected trials."""
    power: PowerPlan | None = None
    """With ``delta`` and ``sd`` or ``prior``: the seeds per arm that detect ``delta``."""
    downstream: DownstreamPlan | None = None
    """The downstream tasks the trials are evaluated on, with their fine-tunes' cost in samples
    next to pretraining's (None when no variant enables one)."""


class CreatedOut(BaseModel):
    id: str
    name: str
    status: str
    baseline: str
    variants: list[str]
    trials: int
    cached: int
    job_submission_id: str | None
    submit_error: str | None = None


class EvaluationOut(BaseModel):
    """One downstream evaluation of a trial: a task under its settings (``evaluation_key``)."""

    task: str
    evaluation_key: str
    state: str
    attempts: int
    metrics: dict[str, float]
    """The task's test-split metrics as the trial reports them (``vqa_accuracy``, ...)."""
    error: str | None
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None


class TrialOut(BaseModel):
    id: int
    seed: int
    state: str
    step: int
    total_steps: int
    progress: float
    attempts: int
    metrics: dict[str, float]
    error: str | None
    trial_key: str
    cached_from: int | None
    worker_pid: int | None
    worker_node: str | None
    worker_ray_node: str | None
    resumed_from_step: int | None
    mlflow_run_id: str | None
    mlflow_url: str | None
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None
    evaluations: list[EvaluationOut] = Field(default_factory=list)
    """Its downstream evaluations, in the order they were stored."""


class VariantOut(BaseModel):
    name: str
    levels: dict[str, str]
    states: dict[str, int]
    progress: float
    trials: list[TrialOut]


class ExperimentOut(BaseModel):
    id: str
    name: str
    description: str
    status: str
    design: str
    baseline: str
    primary_metric: str
    created_at: UtcDateTime
    states: dict[str, int]
    progress: float
    job_submission_id: str | None
    mlflow_experiment_id: str | None
    mlflow_url: str | None
    variants: list[VariantOut]
    evaluations: dict[str, int] = Field(default_factory=dict)
    """Downstream evaluations per state, every state present."""


class ExperimentSummaryOut(BaseModel):
    id: str
    name: str
    status: str
    created_at: UtcDateTime
    trials: int
    states: dict[str, int]
    progress: float


class ActionOut(BaseModel):
    id: str
    status: str
    trials: int
    job_submission_id: str | None = None


# ---- shaping ---------------------------------------------------------------------------------

def dry_run_out(planned: Plan) -> DryRunOut:
    return DryRunOut(
        name=planned.spec.name, design=planned.spec.design,
        baseline=planned.expansion.baseline, seeds=planned.expansion.seeds,
        trials=len(planned.expansion.trials),
        variants=[_planned_variant_out(nv) for nv in planned.variants],
        downstream=plan_downstream(planned.expansion),
    )


def _planned_variant_out(nv: NewVariant) -> PlannedVariantOut:
    return PlannedVariantOut(
        name=nv.name, levels=nv.levels, overrides=nv.overrides, config_hash=nv.config_hash,
        trial_keys={t.seed: t.trial_key for t in nv.trials},
    )


def created_out(submission: Submission) -> CreatedOut:
    exp = submission.experiment
    return CreatedOut(
        id=exp.id, name=exp.name, status=exp.status, baseline=exp.baseline,
        variants=[v.name for v in exp.variants], trials=len(exp.trials),
        cached=exp.counts()["cached"], job_submission_id=submission.job_submission_id,
        submit_error=submission.submit_error,
    )


def _evaluation_out(e: EvaluationView) -> EvaluationOut:
    return EvaluationOut(task=e.task, evaluation_key=e.evaluation_key, state=e.state.value,
                         attempts=e.attempts, metrics=e.metrics, error=e.error,
                         started_at=e.started_at, finished_at=e.finished_at)


def _trial_out(t: TrialView, settings: Settings,
               evaluations: Sequence[EvaluationView] = ()) -> TrialOut:
    return TrialOut(
        id=t.id, seed=t.seed, state=t.state.value, step=t.step, total_steps=t.total_steps,
        progress=t.progress, attempts=t.attempts, metrics=t.metrics, error=t.error,
        trial_key=t.trial_key, cached_from=t.cached_from, worker_pid=t.worker_pid,
        worker_node=t.worker_node, worker_ray_node=t.worker_ray_node,
        resumed_from_step=t.resumed_from_step, mlflow_run_id=t.mlflow_run_id,
        mlflow_url=run_url(settings.mlflow_ui_url, t.mlflow_experiment_id, t.mlflow_run_id),
        started_at=t.started_at, finished_at=t.finished_at,
        evaluations=[_evaluation_out(e) for e in evaluations],
    )


def experiment_out(exp: ExperimentView, settings: Settings,
                   evaluations: list[EvaluationView] | None = None) -> ExperimentOut:
    """The status body; ``evaluations`` are the experiment's downstream evaluations."""
    by_trial: dict[int, list[EvaluationView]] = {}
    for e in evaluations or []:
        by_trial.setdefault(e.trial_id, []).append(e)
    variants = []
    for v in exp.variants:
        states: dict[str, int] = {}
        for t in v.trials:
            states[t.state.value] = states.get(t.state.value, 0) + 1
        variants.append(VariantOut(
            name=v.name, levels=v.levels, states=states, progress=v.progress,
            trials=[_trial_out(t, settings, by_trial.get(t.id, [])) for t in v.trials],
        ))
    ui = settings.mlflow_ui_url.rstrip("/")
    return ExperimentOut(
        id=exp.id, name=exp.name, description=exp.description, status=exp.status,
        design=exp.design, baseline=exp.baseline, primary_metric=exp.primary_metric,
        created_at=exp.created_at, states=exp.counts(), progress=exp.progress,
        job_submission_id=exp.job_submission_id, mlflow_experiment_id=exp.mlflow_experiment_id,
        mlflow_url=experiment_url(ui, exp.mlflow_experiment_id)
        if ui and exp.mlflow_experiment_id else None,
        variants=variants,
        evaluations=evaluation_counts(evaluations or []),
    )


def summary_out(exp: ExperimentView) -> ExperimentSummaryOut:
    return ExperimentSummaryOut(
        id=exp.id, name=exp.name, status=exp.status, created_at=exp.created_at,
        trials=len(exp.trials), states=exp.counts(), progress=exp.progress,
    )
