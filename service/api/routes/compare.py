"""The comparison of an experiment's variants over seeds, in every format, and its HTML report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from service import report
from service.analysis import Analysis
from service.api.caches import caches
from service.api.deps import CompareQueryDep, SettingsDep, StoreDep, check_auth, error
from service.api.responses import UNAUTHORIZED, errors
from service.settings import Settings
from service.store import NotFound, Store
from service.views import CompareQuery, Format, QueryError

router = APIRouter(prefix="/experiments", tags=["experiments"],
                   dependencies=[Depends(check_auth)], responses=UNAUTHORIZED)


@router.get(
    "/{exp_id}/compare", response_model=None,
    responses={200: {"model": Analysis, "content": {
        mt: {} for fmt, mt in report.MEDIA_TYPES.items() if fmt != "json"
    }}, **errors(404, 422)},
)
def compare_experiment(
    exp_id: str,
    request: Request,
    query: CompareQueryDep,
    store: StoreDep,
    settings: SettingsDep,
    format: Annotated[Format, Query(description="json | markdown | csv | latex | html | png")
                      ] = "json",
) -> Response:
    """Seed-aware comparison: mean and CI per variant and metric over done (finished or
    cached) seeds, deltas vs the baseline with corrected p values, unfinished seeds counted.

    A plain ``def``: FastAPI runs it in a worker thread, so the statistics and the plots
    (seconds for PNG/HTML of 100 variants) never block the event loop. Computed once per
    state of the experiment (``service.api.compare_cache``).
    """
    return _rendered(request, store, exp_id, format, query, settings)


@router.get("/{exp_id}/report", response_class=Response,
            responses={200: {"content": {"text/html": {}}}, **errors(404, 422)})
def report_page(exp_id: str, request: Request, query: CompareQueryDep, store: StoreDep,
                settings: SettingsDep) -> Response:
    """A self-contained HTML page: the table, the plots (inline PNG) and MLflow run links."""
    return _rendered(request, store, exp_id, "html", query, settings)


def _rendered(request: Request, store: Store, exp_id: str, fmt: str, query: CompareQuery,
              settings: Settings) -> Response:
    try:
        body, media_type = caches(request).compare.compare(store, exp_id, fmt, query, settings)
    except NotFound:
        raise error(404, "id", f"no experiment {exp_id!r}") from None
    except QueryError as err:
        raise error(422, err.field, err.reason) from None
    return Response(body, media_type=media_type)
