"""Liveness, open without a token so a supervisor or load balancer can poll it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.deps import ReconcilerDep

router = APIRouter(tags=["service"])


@router.get("/healthz")
def healthz(reconciler: ReconcilerDep) -> dict[str, Any]:
    return {"status": "ok", "reconciler_error": reconciler.last_error if reconciler else None}
