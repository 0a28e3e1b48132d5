"""Experiments: submit a spec, list, inspect, cancel, retry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service import submit
from service.api.deps import (
    ExecutorDep,
    ReconcilerDep,
    SettingsDep,
    StoreDep,
    check_auth,
    error,
    load_experiment,
)
from service.api.models import (
    ActionOut,
    CreatedOut,
    DryRunOut,
    ExperimentOut,
    ExperimentSummaryOut,
    created_out,
    dry_run_out,
    experiment_out,
    summary_out,
)
from service.execution import Executor, RayUnavailable, Reconciler
from service.settings import Settings
from service.specs import SpecError
from service.store import Store

router = APIRouter(prefix="/experiments", tags=["experiments"],
                   dependencies=[Depends(check_auth)])

_SPEC_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/AblationSpec"}},
    "application/yaml": {"schema": {"$ref": "#/components/schemas/AblationSpec"}},
}}}
"""The body is read raw (JSON or YAML), so its schema is declared by hand (see ``app.openapi``)."""


@router.post("", status_code=201, response_model=CreatedOut | DryRunOut,
             openapi_extra=_SPEC_BODY)
async def create_experiment(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    executor: ExecutorDep,
    reconciler: ReconcilerDep,
    dry_run: Annotated[bool, Query(description="expand and validate only; run nothing")] = False,
) -> Any:
    """Submit an ablation spec (JSON or YAML body)."""
    body = await request.body()
    # expansion, SQL and the job submission block: keep them off the event loop
    return await run_in_threadpool(_create, body, dry_run, settings, store, executor, reconciler)


def _create(body: bytes, dry_run: bool, settings: Settings, store: Store, executor: Executor,
            reconciler: Reconciler | None) -> Any:
    try:
        planned = submit.plan(body, settings)
    except SpecError as err:
        return JSONResponse({"detail": err.errors}, status_code=422)
    if dry_run:
        return JSONResponse(dry_run_out(planned).model_dump(mode="json"), status_code=200)
    return created_out(submit.submit(planned, store, executor, reconciler))


@router.get("")
def list_experiments(store: StoreDep) -> list[ExperimentSummaryOut]:
    return [summary_out(e) for e in store.list_experiments()]


@router.get("/{exp_id}")
def get_experiment(exp_id: str, store: StoreDep, settings: SettingsDep) -> ExperimentOut:
    return experiment_out(load_experiment(store, exp_id), settings)


@router.post("/{exp_id}/cancel")
def cancel_experiment(exp_id: str, store: StoreDep, executor: ExecutorDep) -> ActionOut:
    load_experiment(store, exp_id)
    n = executor.cancel(exp_id)
    return ActionOut(id=exp_id, status=store.get_experiment(exp_id).status, trials=n)


@router.post("/{exp_id}/retry")
def retry_experiment(exp_id: str, store: StoreDep, executor: ExecutorDep) -> ActionOut:
    """Run the failed trials again (finished, cached and cancelled ones stay)."""
    load_experiment(store, exp_id)
    n = store.retry_failed(exp_id)
    if n == 0:
        raise error(409, "state", "the experiment has no failed trials to retry")
    try:
        sid = executor.submit(exp_id)
    except RayUnavailable as err:
        raise error(503, "ray", f"Ray is unreachable; the reconciler retries: {err}") from err
    return ActionOut(id=exp_id, status=store.get_experiment(exp_id).status, trials=n,
                     job_submission_id=sid)
