"""Liveness, open without a token so a supervisor or load balancer can poll it; the
reconciler's last error (which may name internal hosts) only to a caller with the token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from service.api.deps import ReconcilerDep, SettingsDep, authorized

router = APIRouter(tags=["service"])


@router.get("/healthz")
def healthz(request: Request, settings: SettingsDep, reconciler: ReconcilerDep
            ) -> dict[str, Any]:
    error = reconciler.last_error if reconciler else None
    if error is not None and not authorized(request, settings):
        error = "(hidden: send the token to see it)"
    return {"status": "ok", "reconciler_error": error}
