"""HTTP routes, and only routes: validate, call the layer below, shape the answer.

``create_app(settings)`` builds the FastAPI app; the store and the executor are injected
(``app.state`` + ``Depends``), so tests and the CLI build the same app. Every error a client can
cause is a 4xx whose body is ``{"detail": [{"field": ..., "reason": ...}]}``; a rejected spec
changes nothing in the store (it is expanded and validated before anything is written).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service import report, views
from service.analysis import Analysis
from service.execution import Executor, RayUnavailable, Reconciler
from service.settings import Settings
from service.specs import AblationSpec, Expansion, SpecError, expand, parse_spec, spec_to_json
from service.store import ExperimentView, NewTrial, NewVariant, NotFound, Store
from service.views import CiMethod, CompareQuery, Format, QueryError, run_url

log = logging.getLogger(__name__)


# ---- response models (the contract) ---------------------------------------------------------

class FieldError(BaseModel):
    field: str
    reason: str


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
    variants: list[PlannedVariantOut]
    trials: int


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
    resumed_from_step: int | None
    mlflow_run_id: str | None
    mlflow_url: str | None
    started_at: datetime | None
    finished_at: datetime | None


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
    created_at: datetime
    states: dict[str, int]
    progress: float
    job_submission_id: str | None
    mlflow_experiment_id: str | None
    mlflow_url: str | None
    variants: list[VariantOut]


class ExperimentSummaryOut(BaseModel):
    id: str
    name: str
    status: str
    created_at: datetime
    trials: int
    states: dict[str, int]
    progress: float


class ActionOut(BaseModel):
    id: str
    status: str
    trials: int
    job_submission_id: str | None = None


# ---- shaping -------------------------------------------------------------------------------

def _trial_progress(step: int, total: int, state: str) -> float:
    if state in ("finished", "cached"):
        return 1.0
    return round(step / total, 4) if total else 0.0


def experiment_out(exp: ExperimentView, settings: Settings) -> ExperimentOut:
    variants = []
    for v in exp.variants:
        trials = [
            TrialOut(
                id=t.id, seed=t.seed, state=t.state.value, step=t.step,
                total_steps=t.total_steps,
                progress=_trial_progress(t.step, t.total_steps, t.state.value),
                attempts=t.attempts, metrics=t.metrics, error=t.error, trial_key=t.trial_key,
                cached_from=t.cached_from, worker_pid=t.worker_pid,
                resumed_from_step=t.resumed_from_step, mlflow_run_id=t.mlflow_run_id,
                mlflow_url=run_url(settings.mlflow_ui_url, t.mlflow_experiment_id,
                                   t.mlflow_run_id),
                started_at=t.started_at, finished_at=t.finished_at,
            )
            for t in v.trials
        ]
        states: dict[str, int] = {}
        for t in v.trials:
            states[t.state.value] = states.get(t.state.value, 0) + 1
        variants.append(VariantOut(
            name=v.name, levels=v.levels, states=states, trials=trials,
            progress=round(sum(t.progress for t in trials) / max(len(trials), 1), 4),
        ))
    n = max(len(exp.trials), 1)
    ui = settings.mlflow_ui_url.rstrip("/")
    return ExperimentOut(
        id=exp.id, name=exp.name, description=exp.description, status=exp.status,
        design=exp.design, baseline=exp.baseline, primary_metric=exp.primary_metric,
        created_at=exp.created_at, states=exp.counts(),
        progress=round(sum(tr.progress for v in variants for tr in v.trials) / n, 4),
        job_submission_id=exp.job_submission_id, mlflow_experiment_id=exp.mlflow_experiment_id,
        mlflow_url=f"{ui}/#/experiments/{exp.mlflow_experiment_id}"
        if ui and exp.mlflow_experiment_id else None,
        variants=variants,
    )


def new_variants(expansion: Expansion) -> list[NewVariant]:
    from trainer.keys import trial_key

    return [
        NewVariant(
            name=v.name, levels=v.levels, overrides=v.overrides,
            config=v.config.model_dump(mode="json"), config_hash=v.config.config_hash(),
            trials=[NewTrial(seed=s, trial_key=trial_key(v.config, s)) for s in expansion.seeds],
        )
        for v in expansion.variants
    ]


# ---- dependencies ----------------------------------------------------------------------------

def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_executor(request: Request) -> Executor:
    return request.app.state.executor


def compare_query(
    baseline: str | None = Query(None, description="variant to compare against "
                                 "(default: the spec's baseline)"),
    alpha: float = Query(0.05, gt=0, lt=1, description="significance level; CIs at 1 - alpha"),
    correction: str = Query("holm", description="multiple-comparison correction: a statsmodels "
                            "multipletests method (holm, bonferroni, fdr_bh, ...) or none"),
    ci: CiMethod = Query("t", description="t intervals, or bootstrap (percentile)"),
) -> CompareQuery:
    """The comparison options of /compare and /report (the analysis checks baseline/correction)."""
    return CompareQuery(baseline=baseline, alpha=alpha, correction=correction, ci=ci)


def _error(status: int, field: str, reason: str) -> HTTPException:
    return HTTPException(status, detail=[{"field": field, "reason": reason}])


def _load(store: Store, exp_id: str) -> ExperimentView:
    try:
        return store.get_experiment(exp_id)
    except NotFound:
        raise _error(404, "id", f"no experiment {exp_id!r}") from None


def check_auth(request: Request) -> None:
    token = request.app.state.settings.auth_token
    if token is None:
        return
    given = request.headers.get("authorization", "")
    if given != f"Bearer {token.get_secret_value()}":
        raise _error(401, "authorization", "a valid 'Bearer <token>' header is required")


# ---- the app -------------------------------------------------------------------------------

def create_app(settings: Settings | None = None, *, store: Store | None = None,
               executor: Executor | None = None, reconcile: bool = True) -> FastAPI:
    """The controller. ``reconcile`` runs the reconciler at startup and periodically."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reconciler = None
        if reconcile:
            reconciler = Reconciler(app.state.executor, settings.reconcile_interval_s)
            reconciler.start()
        app.state.reconciler = reconciler
        try:
            yield
        finally:
            if reconciler is not None:
                reconciler.stop()

    app = FastAPI(
        title="vlp-ablate", version="0.1.0", lifespan=lifespan,
        description="Ablation experiments for vision-language pretraining: POST a spec, get "
        "trials on Ray, runs in MLflow and a comparison over seeds.",
        responses={422: {"model": ErrorBody}, 404: {"model": ErrorBody}},
    )
    app.state.settings = settings
    app.state.store = store or Store(settings.db_url)
    app.state.executor = executor or Executor(settings, app.state.store)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        detail = [
            {"field": ".".join(str(p) for p in e["loc"] if p not in ("body", "query")),
             "reason": e["msg"]}
            for e in err.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, err: HTTPException) -> JSONResponse:
        detail = err.detail
        if not isinstance(detail, list):
            detail = [{"field": "<request>", "reason": str(detail)}]
        return JSONResponse({"detail": detail}, status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.get("/healthz", tags=["service"])
    def healthz(request: Request) -> dict[str, Any]:
        rec = request.app.state.reconciler
        return {"status": "ok", "reconciler_error": rec.last_error if rec else None}

    auth = [Depends(check_auth)]

    @app.post(
        "/experiments", status_code=201, tags=["experiments"], dependencies=auth,
        response_model=CreatedOut | DryRunOut,
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/AblationSpec"}},
            "application/yaml": {"schema": {"$ref": "#/components/schemas/AblationSpec"}},
        }}},
    )
    async def create_experiment(
        request: Request,
        dry_run: bool = Query(False, description="expand and validate only; run nothing"),
        settings: Settings = Depends(get_settings),
        store: Store = Depends(get_store),
        executor: Executor = Depends(get_executor),
    ) -> Any:
        """Submit an ablation spec (JSON or YAML body)."""
        body = await request.body()
        # expansion, SQL and the job submission block: keep them off the event loop
        return await run_in_threadpool(_create, body, dry_run, settings, store, executor)

    def _create(body: bytes, dry_run: bool, settings: Settings, store: Store,
                executor: Executor) -> Any:
        try:
            spec = parse_spec(body)
            expansion = expand(spec, max_variants=settings.max_variants,
                               max_trials=settings.max_trials)
        except SpecError as err:
            return JSONResponse({"detail": err.errors}, status_code=422)
        variants = new_variants(expansion)
        if dry_run:
            return JSONResponse(DryRunOut(
                name=spec.name, design=spec.design, baseline=expansion.baseline,
                seeds=expansion.seeds, trials=len(expansion.trials),
                variants=[
                    PlannedVariantOut(
                        name=nv.name, levels=nv.levels, overrides=nv.overrides,
                        config_hash=nv.config_hash,
                        trial_keys={t.seed: t.trial_key for t in nv.trials},
                    )
                    for nv in variants
                ],
            ).model_dump(mode="json"), status_code=200)
        exp = store.create_experiment(
            name=spec.name, description=spec.description,
            spec=spec_to_json(spec), design=spec.design,
            baseline=expansion.baseline, primary_metric=spec.metrics.primary,
            variants=variants, reuse_cached=not spec.rerun,
        )
        sid, submit_error = None, None
        try:
            sid = executor.submit(exp.id)
        except (RayUnavailable, OSError) as err:
            submit_error = f"not submitted yet (the reconciler retries): {err}"
            log.warning("submit %s: %s", exp.id, err)
        except Exception as err:  # MLflow unreachable and the like: the reconciler retries
            submit_error = f"not submitted yet (the reconciler retries): {err}"
            log.warning("submit %s: %s", exp.id, err)
        exp = store.get_experiment(exp.id)
        reconciler = getattr(app.state, "reconciler", None)
        if sid is None and submit_error is None and reconciler is not None:
            reconciler.wake()  # nothing to run (all cached): log its comparison now
        return CreatedOut(
            id=exp.id, name=exp.name, status=exp.status, baseline=exp.baseline,
            variants=[v.name for v in exp.variants], trials=len(exp.trials),
            cached=exp.counts()["cached"], job_submission_id=sid, submit_error=submit_error,
        )

    @app.get("/experiments", tags=["experiments"], dependencies=auth)
    def list_experiments(store: Store = Depends(get_store)) -> list[ExperimentSummaryOut]:
        out = []
        for e in store.list_experiments():
            counts = e.counts()
            done = counts["finished"] + counts["cached"]
            out.append(ExperimentSummaryOut(
                id=e.id, name=e.name, status=e.status, created_at=e.created_at,
                trials=len(e.trials), states=counts,
                progress=round(done / max(len(e.trials), 1), 4),
            ))
        return out

    @app.get("/experiments/{exp_id}", tags=["experiments"], dependencies=auth)
    def get_experiment(exp_id: str, store: Store = Depends(get_store),
                       settings: Settings = Depends(get_settings)) -> ExperimentOut:
        return experiment_out(_load(store, exp_id), settings)

    @app.post("/experiments/{exp_id}/cancel", tags=["experiments"], dependencies=auth)
    def cancel_experiment(exp_id: str, store: Store = Depends(get_store),
                          executor: Executor = Depends(get_executor)) -> ActionOut:
        _load(store, exp_id)
        n = executor.cancel(exp_id)
        exp = store.get_experiment(exp_id)
        return ActionOut(id=exp_id, status=exp.status, trials=n)

    @app.post("/experiments/{exp_id}/retry", tags=["experiments"], dependencies=auth)
    def retry_experiment(exp_id: str, store: Store = Depends(get_store),
                         executor: Executor = Depends(get_executor)) -> ActionOut:
        """Run the failed trials again (finished, cached and cancelled ones stay)."""
        _load(store, exp_id)
        n = store.retry_failed(exp_id)
        if n == 0:
            raise _error(409, "state", "the experiment has no failed trials to retry")
        try:
            sid = executor.submit(exp_id)
        except RayUnavailable as err:
            raise _error(503, "ray", f"Ray is unreachable; the reconciler retries: {err}") from err
        exp = store.get_experiment(exp_id)
        return ActionOut(id=exp_id, status=exp.status, trials=n, job_submission_id=sid)

    @app.get(
        "/experiments/{exp_id}/compare", tags=["experiments"], dependencies=auth,
        response_model=None,
        responses={200: {"model": Analysis, "content": {
            mt: {} for fmt, mt in report.MEDIA_TYPES.items() if fmt != "json"
        }}},
    )
    def compare_experiment(
        exp_id: str,
        format: Format = Query("json", description="json | markdown | csv | latex | html | png"),
        query: CompareQuery = Depends(compare_query),
        store: Store = Depends(get_store),
        settings: Settings = Depends(get_settings),
    ) -> Response:
        """Seed-aware comparison: mean and CI per variant and metric over done (finished or
        cached) seeds, deltas vs the baseline with corrected p values, unfinished seeds counted.

        A plain ``def``: FastAPI runs it in a worker thread, so the statistics and the plots
        (seconds for PNG/HTML of 100 variants) never block the event loop.
        """
        return _rendered(store, exp_id, format, query, settings)

    @app.get(
        "/experiments/{exp_id}/report", tags=["experiments"], dependencies=auth,
        response_class=Response, responses={200: {"content": {"text/html": {}}}},
    )
    def report_page(
        exp_id: str,
        query: CompareQuery = Depends(compare_query),
        store: Store = Depends(get_store),
        settings: Settings = Depends(get_settings),
    ) -> Response:
        """A self-contained HTML page: the table, the plots (inline PNG) and MLflow run links."""
        return _rendered(store, exp_id, "html", query, settings)

    def _rendered(store: Store, exp_id: str, fmt: str, query: CompareQuery,
                  settings: Settings) -> Response:
        try:
            body, media_type = views.compare(store, exp_id, fmt, query, settings)
        except NotFound:
            raise _error(404, "id", f"no experiment {exp_id!r}") from None
        except QueryError as err:
            raise _error(422, err.field, err.reason) from None
        return Response(body, media_type=media_type)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            spec_schema = AblationSpec.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(spec_schema.pop("$defs", {}))
            components["AblationSpec"] = spec_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def create_app_from_env() -> FastAPI:
    """``uvicorn --factory service.api:create_app_from_env``: settings from ``ABLATE_*``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return create_app(Settings())
