"""Evaluating a finished experiment on more downstream tasks: the use case behind
``POST /experiments/<id>/evaluate``, with no HTTP in it.

``plan_evaluation`` validates the request and derives, writing nothing: each variant's stored
config with the tasks added to ``eval.downstream.tasks`` (and any ``eval.downstream.*``
settings), checked to keep every trial key (that section is outside the key), the spec's
``metrics.reported`` extended with the tasks' metrics, and one keyed evaluation per trial with a
result and task. ``request_evaluation`` stores that in one transaction, inserting only the
evaluations not stored yet, and submits the experiment's job, which runs them
(``service.job.evaluate``). Asked twice, the second request stores and runs nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from service.execution import Executor
from service.specs.downstream import DOWNSTREAM_TASKS, tasks_metrics
from service.states import RESULT_STATES, EvaluationState
from service.store import ExperimentView, Store, WantedEvaluation
from service.store.views import evaluation_counts
from service.submit import submit_job
from trainer.config import TrainConfig, deep_merge, nest
from trainer.config.errors import describe_validation_error
from trainer.downstream.keys import evaluation_key  # torch-free

SETTINGS_PREFIX = "eval.downstream."


class EvaluationRefused(ValueError):
    """The request cannot be done; ``status`` is the HTTP status it maps to (409: the
    experiment's state, 422: the request), ``errors`` name each field."""

    def __init__(self, status: int, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))
        self.status, self.errors = status, errors


@dataclass(frozen=True)
class EvaluationPlan:
    tasks: list[str]
    configs: dict[str, dict[str, Any]]
    spec: dict[str, Any]
    wanted: list[WantedEvaluation]


@dataclass(frozen=True)
class EvaluationOutcome:
    experiment: str
    tasks: list[str]
    added: int
    states: dict[str, int]
    job_submission_id: str | None
    submit_error: str | None


def _check_tasks(tasks: list[str]) -> list[str]:
    errors = []
    if not tasks:
        errors.append({"field": "tasks", "reason": "name at least one downstream task"})
    for i, task in enumerate(tasks):
        if task not in DOWNSTREAM_TASKS:
            errors.append({"field": f"tasks[{i}]", "reason": f"unknown downstream task "
                           f"{task!r}; expected one of {list(DOWNSTREAM_TASKS)}"})
        elif task in tasks[:i]:
            errors.append({"field": f"tasks[{i}]", "reason": f"{task!r} is listed twice"})
    if errors:
        raise EvaluationRefused(422, errors)
    return tasks


def _check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    errors = [{"field": f"settings.{key}",
               "reason": "only eval.downstream.<task>.* settings may change after training "
                         "(anything else would change the trial)"}
              for key in settings
              if not key.startswith(SETTINGS_PREFIX) or key == SETTINGS_PREFIX + "tasks"
              or key.startswith(SETTINGS_PREFIX + "tasks.")]
    if errors:
        raise EvaluationRefused(422, errors)
    return nest(settings)


def plan_evaluation(exp: ExperimentView, tasks: list[str],
                    settings: dict[str, Any] | None = None) -> EvaluationPlan:
    """What evaluating ``exp`` on ``tasks`` stores; raises ``EvaluationRefused``."""
    tasks = _check_tasks(list(tasks))
    overrides = _check_settings(dict(settings or {}))
    if exp.cancelled_at is not None or exp.status != "finished":
        raise EvaluationRefused(409, [{"field": "status", "reason": f"the experiment is "
                                       f"{exp.status}; only a finished one is evaluated later"}])
    configs: dict[str, dict[str, Any]] = {}
    wanted: list[WantedEvaluation] = []
    for v in exp.variants:
        old = TrainConfig.model_validate(v.config)
        enabled = [*old.eval.downstream.tasks, *(t for t in tasks
                                                 if t not in old.eval.downstream.tasks)]
        merged = deep_merge(v.config, overrides)
        merged["eval"]["downstream"]["tasks"] = enabled
        try:
            new = TrainConfig.model_validate(merged)
        except ValidationError as err:
            raise EvaluationRefused(422, [{"field": f"settings.{e['field']}", "reason": e["reason"]}
                                          for e in describe_validation_error(err)]) from None
        # eval.downstream is outside the trial key: the same trials, the same runs
        assert new.canonical_json() == old.canonical_json(), v.name
        configs[v.name] = new.model_dump(mode="json")
        wanted += [WantedEvaluation(t.id, task, evaluation_key(t.trial_key, task, new))
                   for t in v.trials if t.state in RESULT_STATES for task in tasks]
    metrics = exp.spec.get("metrics") or {}
    have = {metrics.get("primary"), *(metrics.get("reported") or [])}
    reported = [*(metrics.get("reported") or []),
                *(m for m in tasks_metrics(tasks) if m not in have)]
    spec = {**exp.spec, "metrics": {**metrics, "reported": reported}}
    return EvaluationPlan(tasks=tasks, configs=configs, spec=spec, wanted=wanted)


def request_evaluation(store: Store, executor: Executor, exp_id: str, tasks: list[str],
                       settings: dict[str, Any] | None = None) -> EvaluationOutcome:
    """Store the plan and submit the job when anything is left to run (NotFound: no such
    experiment; EvaluationRefused: see ``plan_evaluation``)."""
    exp = store.get_experiment(exp_id)
    planned = plan_evaluation(exp, tasks, settings)
    added = store.evaluations.request(exp_id, planned.wanted, configs=planned.configs,
                                      spec=planned.spec)
    evaluations = store.evaluations.for_experiment(exp_id)
    sid, why = None, None
    if any(e.state in (EvaluationState.PENDING, EvaluationState.RUNNING) for e in evaluations):
        sid, why = submit_job(executor, exp_id)
    states = evaluation_counts(evaluations)
    enabled = list(dict.fromkeys(t for c in planned.configs.values()
                                 for t in c["eval"]["downstream"]["tasks"]))
    return EvaluationOutcome(experiment=exp_id, tasks=enabled, added=added, states=states,
                             job_submission_id=sid, submit_error=why)
