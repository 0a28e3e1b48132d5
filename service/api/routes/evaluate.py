"""``POST /experiments/<id>/evaluate``: a finished experiment evaluated on more downstream tasks
(``service.evaluate``); only the evaluations not stored yet run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from service.api.deps import ExecutorDep, StoreDep, check_auth, error
from service.api.responses import UNAUTHORIZED, errors
from service.evaluate import EvaluationRefused, request_evaluation
from service.specs.downstream import DOWNSTREAM_TASKS
from service.store import NotFound

router = APIRouter(prefix="/experiments", tags=["experiments"],
                   dependencies=[Depends(check_auth)], responses=UNAUTHORIZED)


class EvaluateIn(BaseModel):
    """The tasks to add, and optionally their settings as dotted ``eval.downstream.*`` keys."""

    model_config = ConfigDict(extra="forbid")

    # the rules below are the schema's only: the use case checks them, naming ``tasks[i]``
    tasks: list[str] = Field(max_length=16, examples=[["vqa", "nlvr"]], json_schema_extra={
        "minItems": 1, "uniqueItems": True, "items": {"enum": list(DOWNSTREAM_TASKS)}})
    settings: dict[str, Any] = Field(
        default_factory=dict, max_length=64,
        examples=[{"eval.downstream.vqa.finetune.steps": 200}],
        json_schema_extra={"propertyNames": {"pattern": r"^eval\.downstream\.(?!tasks)"}})


class EvaluateOut(BaseModel):
    id: str
    tasks: list[str]
    """Every task the experiment's variants now enable."""
    added: int
    """Evaluations this request stored (0: all were stored before; nothing new runs)."""
    evaluations: dict[str, int]
    """The experiment's evaluations per state."""
    job_submission_id: str | None
    submit_error: str | None = None


@router.post("/{exp_id}/evaluate", response_model=EvaluateOut, status_code=202,
             responses={200: {"model": EvaluateOut, "description": "Nothing new to store: "
                              "every evaluation asked for was stored before"},
                        **errors(404, 409, 422, e409="The experiment is not finished",
                                 e422="A task or setting is refused; each entry names it")})
async def evaluate_experiment(exp_id: str, body: EvaluateIn, store: StoreDep,
                              executor: ExecutorDep) -> Any:
    """Evaluate every trial with a result on more downstream tasks, on its kept trunk, in its
    own MLflow run; trial keys stay. 202 when new evaluations were stored (the job runs them),
    200 when the same request had stored them all before."""
    try:
        out = await run_in_threadpool(request_evaluation, store, executor, exp_id,
                                      body.tasks, body.settings)
    except NotFound:
        raise error(404, "id", f"no experiment {exp_id!r}") from None
    except EvaluationRefused as err:
        return JSONResponse({"detail": err.errors}, status_code=err.status)
    body_out = EvaluateOut(id=out.experiment, tasks=out.tasks, added=out.added,
                           evaluations=out.states, job_submission_id=out.job_submission_id,
                           submit_error=out.submit_error)
    return JSONResponse(body_out.model_dump(mode="json"), status_code=202 if out.added else 200)
