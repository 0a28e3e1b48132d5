"""Experiments: submit a spec, list, inspect, cancel, retry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service import submit
from service.api.caches import caches
from service.api.deps import (
    ExecutorDep,
    ReconcilerDep,
    SettingsDep,
    StoreDep,
    check_auth,
    error,
    get_store,
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
    summary_out,
)
from service.api.responses import UNAUTHORIZED, Responses, errors
from service.execution import Executor, RayUnavailable, Reconciler
from service.planning.adaptive import plan_adaptive
from service.planning.power import PowerError, PowerPlan, plan_power
from service.settings import Settings
from service.specs import SpecError
from service.store import NotFound, Store

router = APIRouter(prefix="/experiments", tags=["experiments"],
                   dependencies=[Depends(check_auth)], responses=UNAUTHORIZED)

_SPEC_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/AblationSpec"}},
    "application/yaml": {"schema": {"$ref": "#/components/schemas/AblationSpec"}},
}}}
"""The body is read raw (JSON or YAML), so its schema is declared by hand (see ``app.openapi``)."""

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

_POST_RESPONSES: Responses = {
    200: {"model": CreatedOut | DryRunOut, "description": f"A dry run's plan; or the experiment "
          f"an earlier POST with the same {KEY_HEADER} and spec created (nothing new is "
          f"stored; header {REPLAYED_HEADER}: true)",
          "headers": {REPLAYED_HEADER: {"description": "true when the experiment is an earlier "
                                        "POST's", "schema": {"type": "string", "enum": ["true"]}}}},
    201: {"description": "Stored, and its job submitted (or left to the reconciler: "
          "submit_error says why)"},
    **errors(409, 422, e409=f"The {KEY_HEADER} already created an experiment from a different "
             "spec", e422="The spec (or a header) is invalid; each entry names a field. Nothing "
             "is stored"),
}


def is_json(content_type: str | None) -> bool:
    """``application/json`` and ``+json`` types: parsed as JSON, not as YAML."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


@router.post("", status_code=201, response_model=CreatedOut, openapi_extra=_SPEC_BODY,
             responses=_POST_RESPONSES)
async def create_experiment(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    executor: ExecutorDep,
    reconciler: ReconcilerDep,
    dry_run: Annotated[bool, Query(description="expand and validate only; run nothing")] = False,
    delta: Annotated[float | None, Query(
        gt=0, description="dry run: the difference (primary metric's units) to detect; the "
        "answer says how many seeds per arm detect it (with sd or prior)")] = None,
    sd: Annotated[float | None, Query(
        gt=0, description="dry run: the spread of a variant - baseline difference across "
        "seeds")] = None,
    prior: Annotated[str | None, Query(
        min_length=1, max_length=100, description="dry run: an earlier experiment whose "
        "paired differences give the spread")] = None,
    power: Annotated[float, Query(gt=0, lt=1, description="dry run: the power wanted")] = 0.8,
    idempotency_key: Annotated[str | None, Header(
        alias=KEY_HEADER, min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$",
        description="any unique printable-ASCII string (say a UUID): a POST repeated with the "
        "same key and spec returns the first experiment instead of creating another",
    )] = None,
) -> Any:
    """Submit an ablation spec (JSON or YAML body). A dry run and a real POST validate alike."""
    body = await request.body()  # bounded by BodyLimit
    as_json = is_json(request.headers.get("content-type"))
    # parsing, expansion, SQL and the job submission block: keep them off the event loop
    if not dry_run and (delta is not None or sd is not None or prior is not None):
        raise error(422, "delta" if delta is not None else "sd" if sd is not None else "prior",
                    "power planning answers a dry run only (dry_run=true)")
    wanted = None if delta is None else PowerQuery(delta, sd, prior, power)
    return await run_in_threadpool(_create, body, as_json, dry_run, idempotency_key, settings,
                                   store, executor, reconciler, wanted)


def _create(body: bytes, as_json: bool, dry_run: bool, key: str | None, settings: Settings,
            store: Store, executor: Executor, reconciler: Reconciler | None,
            wanted: PowerQuery | None = None) -> Any:
    try:
        planned = submit.plan(body, settings, as_json=as_json)
    except SpecError as err:
        return JSONResponse({"detail": err.errors}, status_code=422)
    if dry_run:
        out = dry_run_out(planned)
        if wanted is not None:
            out.power = _power(planned, store, wanted)
        out.adaptive = plan_adaptive(
            planned.spec, len(planned.variants),
            delta=None if out.power is None else out.power.delta,
            sd=None if out.power is None else out.power.sd,
            sd_source="stated" if out.power is None else out.power.sd_source)
        return JSONResponse(out.model_dump(mode="json"), status_code=200)
    try:
        done = submit.submit(planned, store, executor, reconciler, idempotency_key=key)
    except submit.KeyReused as err:
        raise error(409, KEY_HEADER, str(err)) from None
    if done.replayed:
        return JSONResponse(created_out(done).model_dump(mode="json"), status_code=200,
                            headers={REPLAYED_HEADER: "true"})
    return created_out(done)


@dataclass(frozen=True)
class PowerQuery:
    delta: float
    sd: float | None
    prior: str | None
    power: float


def _power(planned: submit.Plan, store: Store, wanted: PowerQuery) -> PowerPlan:
    prior = None
    if wanted.prior is not None:
        try:
            prior = store.get_experiment(wanted.prior)
        except NotFound:
            raise error(422, "prior", f"no experiment {wanted.prior!r}") from None
    try:
        return plan_power(planned.spec, len(planned.variants), wanted.delta, wanted.sd, prior,
                          wanted.power)
    except PowerError as err:
        raise error(422, err.field, err.reason) from None


@router.get("")
def list_experiments(store: StoreDep) -> list[ExperimentSummaryOut]:
    return [summary_out(e) for e in store.list_experiments()]


@router.get("/{exp_id}", response_model=ExperimentOut, responses=errors(404))
async def get_experiment(exp_id: str, request: Request, settings: SettingsDep) -> Response:
    """The experiment's status, its body rendered once per revision (``caches.StatusCache``).

    ``async``: a cached body the store vouches for without a query (SQLite, nothing committed
    since) is answered on the event loop; anything else (a query, a render) runs in the
    thread pool. The store is read off the app rather than through ``StoreDep``, whose sync
    function would cost a hop to the thread pool and back."""
    status, store = caches(request).status, get_store(request)
    body = status.peek(store, exp_id, settings)
    if body is None:
        try:
            body = await run_in_threadpool(status.body, store, exp_id, settings)
        except NotFound:
            raise error(404, "id", f"no experiment {exp_id!r}") from None
    return Response(body, media_type="application/json")


@router.post("/{exp_id}/cancel", responses=errors(404))
def cancel_experiment(exp_id: str, store: StoreDep, executor: ExecutorDep) -> ActionOut:
    load_experiment(store, exp_id)
    n = executor.cancel(exp_id)
    return ActionOut(id=exp_id, status=store.get_experiment(exp_id).status, trials=n)


@router.post("/{exp_id}/retry", responses=errors(
    404, 409, 503, e409="The experiment has no failed trials to retry"))
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
