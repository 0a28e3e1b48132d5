"""The app's answer caches: /compare and /report (``CompareCache``), and the status body of
GET /experiments/{id} (``StatusCache``), both checked against ``Store.revision`` per request.

They live on ``app.state`` beside the store whose data they hold, made on first use (``caches``)
so every way of building the app (``create_app``, the tests' stub apps) gets them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from fastapi import Request
from pydantic import TypeAdapter

from service.api.compare_cache import CompareCache
from service.api.models import ExperimentOut, experiment_out
from service.api.revision_cache import RevisionCache
from service.settings import Settings
from service.store import Store

__all__ = ["Caches", "StatusCache", "caches"]

_JSON = "application/json"
_OUT = TypeAdapter(ExperimentOut)
"""How FastAPI writes a route's ``response_model`` (``dump_json``): the same bytes."""


class StatusCache:
    """GET /experiments/{id}'s JSON, rendered once per revision of the experiment.

    Loading the experiment with its variants and trials into pydantic views, shaping them into
    ``ExperimentOut`` and serialising cost ~10 ms for 40 trials; the revision query costs a
    thirtieth of that, and status is what clients poll."""

    def __init__(self, settings: Settings) -> None:
        self.cache = RevisionCache(settings.status_cache_entries, settings.status_cache_bytes)

    def body(self, store: Store, exp_id: str, settings: Settings) -> bytes:
        """The status body (raises ``NotFound``), byte for byte what the route's
        ``response_model`` would write. Blocking (SQL): from a worker thread."""
        revision = store.revision(exp_id)  # first: the body is never older than its key
        return self.cache.get_or_compute((exp_id, settings.mlflow_ui_url), revision, lambda: (
            _OUT.dump_json(experiment_out(store.get_experiment(exp_id), settings,
                                          store.evaluations.for_experiment(exp_id))),
            _JSON))[0]

    def peek(self, store: Store, exp_id: str, settings: Settings) -> bytes | None:
        """The cached body if the store can tell without a query that it is current
        (``Revisions.known``: SQLite, nothing committed since); else None. Never blocks, so
        the event loop may call it and skip the thread pool."""
        revision = store.revisions.known(exp_id)
        if revision is None:
            return None
        hit = self.cache.get((exp_id, settings.mlflow_ui_url), revision)
        return None if hit is None else hit[0]


@dataclass
class Caches:
    compare: CompareCache
    status: StatusCache


_CREATE = threading.Lock()


def caches(request: Request) -> Caches:
    """The caches of the app serving ``request`` (made once, sized by its settings)."""
    found: Caches | None = getattr(request.app.state, "caches", None)
    if found is None:
        with _CREATE:
            found = getattr(request.app.state, "caches", None)
            if found is None:
                settings: Settings = request.app.state.settings
                found = Caches(CompareCache(settings), StatusCache(settings))
                request.app.state.caches = found
    return found
