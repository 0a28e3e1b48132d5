"""What the routes depend on, as ``Annotated`` dependencies (FastAPI's full-stack template).

``create_app`` puts the settings, the store, the executor and the reconciler on ``app.state``;
these read them back per request, so tests and the CLI choose them by the settings they build
the app with (the executor is always the real one: tests point it at closed ports).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.execution import Executor, Reconciler
from service.settings import Settings
from service.store import ExperimentView, NotFound, Store
from service.views import CiMethod, CompareQuery


async def get_settings(request: Request) -> Settings:  # async: no thread-pool hop (see below)
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


def get_reconciler(request: Request) -> Reconciler | None:
    """None when the app was built without one (``reconcile=False``) or before startup."""
    reconciler: Reconciler | None = getattr(request.app.state, "reconciler", None)
    return reconciler


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
ReconcilerDep = Annotated[Reconciler | None, Depends(get_reconciler)]


def error(status: int, field: str, reason: str) -> HTTPException:
    """An HTTP error in the API's one shape, ``{"detail": [{"field", "reason"}]}``."""
    return HTTPException(status, detail=[{"field": field, "reason": reason}])


def authorized(request: Request, settings: Settings) -> bool:
    """True without a configured token, or with ``Authorization: Bearer <token>`` (the scheme in
    any case, RFC 7235). The token is compared in constant time, as bytes (a header may hold
    any Latin-1 text, which ``compare_digest`` refuses as str), so a matching prefix does not
    show in the timing."""
    token = settings.auth_token
    if token is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(
        given.strip().encode("utf-8"),
        token.get_secret_value().encode("utf-8"),
    )


BEARER = HTTPBearer(auto_error=False, scheme_name="bearerAuth", description="ABLATE_AUTH_TOKEN, "
                    "when the controller has one (the scheme name in any case)")
"""Declares the scheme to the OpenAPI schema (and to /docs' Authorize button) on every route
behind ``check_auth``; it refuses nothing itself: ``authorized`` decides, here and in /healthz."""


async def check_auth(request: Request, settings: SettingsDep,
                     _declared: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
                     ) -> None:
    """With ``ABLATE_AUTH_TOKEN`` set, every experiment route needs ``Bearer <token>``; a 401
    names the scheme in ``WWW-Authenticate`` (RFC 6750), ``invalid_token`` when one was sent.

    ``async`` (as ``get_settings``) though it awaits nothing: FastAPI runs a plain ``def``
    dependency in the thread pool, a hop there and back on every request (0.3 of the 1.2 ms a
    cached status answer cost, ``bench/load.py``); neither blocks."""
    if authorized(request, settings):
        return
    challenge = 'Bearer realm="vlp-ablate"'
    if "authorization" in request.headers:
        challenge += ', error="invalid_token"'
    raise HTTPException(
        401, detail=[{"field": "authorization",
                      "reason": "a valid 'Authorization: Bearer <token>' header is required"}],
        headers={"WWW-Authenticate": challenge},
    )


def load_experiment(store: Store, exp_id: str) -> ExperimentView:
    """The experiment, or the API's 404."""
    try:
        return store.get_experiment(exp_id)
    except NotFound:
        raise error(404, "id", f"no experiment {exp_id!r}") from None


def compare_query(
    baseline: Annotated[str | None, Query(description="variant to compare against "
                                          "(default: the spec's baseline)")] = None,
    alpha: Annotated[float, Query(gt=0, lt=1,
                                  description="significance level; CIs at 1 - alpha")] = 0.05,
    correction: Annotated[str, Query(description="multiple-comparison correction: a statsmodels "
                                     "multipletests method (holm, bonferroni, fdr_bh, ...) or "
                                     "none")] = "holm",
    ci: Annotated[CiMethod, Query(description="t intervals, or bootstrap (percentile)")] = "t",
) -> CompareQuery:
    """The comparison options of /compare and /report (the analysis checks baseline/correction)."""
    return CompareQuery(baseline=baseline, alpha=alpha, correction=correction, ci=ci)


CompareQueryDep = Annotated[CompareQuery, Depends(compare_query)]
