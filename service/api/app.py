"""The controller's FastAPI app: routers, the error shape, the OpenAPI schema, the reconciler.

``create_app(settings)`` builds it with the store and the executor on ``app.state`` (injected
into the routes by ``deps``), so tests, the CLI and the benches build the same app. Every error a
client can cause is a 4xx whose body is ``{"detail": [{"field": ..., "reason": ...}]}`` (Starlette's
own 404 and 405 included); any other exception is a 500 in the same shape (field ``<server>``),
logged, its trace kept out of the body. Request bodies are bounded (``limits.BodyLimit``).
OPTIONS and 405 list the path's real methods (``methods``); the schema is ``openapi``'s.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from service.api.limits import BodyLimit
from service.api.methods import allowed_methods, options_response
from service.api.openapi import build_schema
from service.api.responses import ALWAYS
from service.api.routes import compare, evaluate, experiments, health
from service.execution import Executor, Reconciler
from service.settings import Settings
from service.store import Store

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               reconcile: bool = True) -> FastAPI:
    """The controller. ``reconcile`` runs the reconciler at startup and periodically; ``store``
    lets a caller share its own (the compare bench)."""
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
        responses=ALWAYS,
    )
    app.state.settings = settings
    app.state.store = store or Store(settings.db_url)
    app.state.executor = Executor(settings, app.state.store)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(HTTPException)(_http_error)
    app.exception_handler(Exception)(_internal_error)
    for module in (health, experiments, compare, evaluate):
        app.include_router(module.router)
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    return app


def create_app_from_env() -> FastAPI:
    """``uvicorn --factory service.api:create_app_from_env``: settings from ``ABLATE_*``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return create_app(Settings())


async def _validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 in the API's shape: the field is the parameter's path, sans body/query."""
    detail = [
        {"field": ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "header")),
         "reason": e["msg"]}
        for e in err.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


async def _http_error(request: Request, err: HTTPException) -> Response:
    """A raised ``HTTPException`` in the API's shape (a plain-text detail becomes one entry);
    Starlette's 405 with the path's real methods, and OPTIONS answered instead of refused."""
    headers = dict(err.headers or {})
    if err.status_code == 405:
        if request.method == "OPTIONS":
            return options_response(request)
        headers["Allow"] = allowed_methods(request)
    raw: Any = err.detail  # ``deps.error`` raises a list; Starlette's own errors carry a string
    detail = raw if isinstance(raw, list) else [{"field": "<request>", "reason": str(raw)}]
    return JSONResponse({"detail": detail}, status_code=err.status_code, headers=headers)


async def _internal_error(request: Request, err: Exception) -> JSONResponse:
    """Anything unforeseen: logged with its trace here, never sent (it may name paths, SQL or
    secrets), and still the API's JSON shape rather than Starlette's plain text."""
    log.error("%s %s failed", request.method, request.url.path,
              exc_info=(type(err), err, err.__traceback__))
    return JSONResponse({"detail": [{"field": "<server>", "reason": "internal error (logged)"}]},
                        status_code=500)


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """Built once, on the first request for it (``openapi.build_schema``)."""
    if app.openapi_schema is None:
        app.openapi_schema = build_schema(app, settings)
    return app.openapi_schema
