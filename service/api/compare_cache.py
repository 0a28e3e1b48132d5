"""/compare and /report computed once per state of an experiment, not once per request.

``views.compare`` loads the experiment with every learning curve, runs the statistics and, for
png/html, matplotlib (seconds): 6-7 requests a second. Here each answer is filed under the
experiment, the format, the query (``CompareQuery``, a frozen dataclass: its fields are the
key) and the MLflow UI URL of the run links, and under the experiment's revision
(``Store.revision``: one small query per request, no curves loaded), so any change to a trial
(a state, a result, a retry) is a miss and the next answer is computed afresh.

Experiments in any state are cached, not only finished ones: the revision makes an answer for a
running experiment exactly as safe as one for a finished experiment, and a dashboard polling a
running experiment between two progress reports (seconds apart) is answered from the cache too.
Each key holds one revision, so a running experiment's old answers are replaced, not piled up.
"""

from __future__ import annotations

from dataclasses import astuple

from service import views
from service.api.revision_cache import Answer, RevisionCache
from service.settings import Settings
from service.store import Store
from service.views import CompareQuery

__all__ = ["CompareCache"]


class CompareCache:
    """``views.compare`` behind a :class:`RevisionCache` sized by the settings."""

    def __init__(self, settings: Settings) -> None:
        self.cache = RevisionCache(settings.compare_cache_entries, settings.compare_cache_bytes)

    def compare(self, store: Store, exp_id: str, fmt: str, query: CompareQuery,
                settings: Settings) -> Answer:
        """What ``views.compare`` answers (same errors: NotFound, QueryError), from the cache
        when the experiment has not changed since it was computed."""
        # first: the answer is never older than its key; no query if the store can tell
        revision = store.revisions.known(exp_id) or store.revision(exp_id)
        key = (exp_id, fmt, astuple(query), settings.mlflow_ui_url)
        return self.cache.get_or_compute(
            key, revision, lambda: views.compare(store, exp_id, fmt, query, settings))
