"""An experiment's revision: a value that changes whenever anything stored about it changes.

What caches of things derived from an experiment (its status body, its comparison) check on
each request instead of loading it: one small query, no JSON columns, no learning curves. It
holds the experiment's columns that change after its creation and, for each trial, its id,
state, attempts, step and ``updated_at``. Every write of a trial goes through the ORM or a Core
``update()`` in ``queries``, and both stamp ``updated_at`` (``onupdate``); state, attempts and
step are there too in case two writes share a timestamp; each downstream evaluation's id, state
and ``updated_at`` likewise. Variants and the experiment's other columns change only with an
evaluation request (``store.evaluations``), which inserts evaluations or reopens the end step.

The database joins the trials' fields into one string (``group_concat``/``string_agg``), so the
answer is one row: a row per trial cost a GIL round trip each in the driver, which under eight
concurrent requests made this query cost more than the rest of a cached status request. The
string is the revision itself, compared exactly (no digest that could collide); the fields hold
no separator, so two different sets of trials never give the same string. If the database
joined rows in another order one time, that would be a needless miss, never a stale hit.

One statement, hence one snapshot on any database. A caller reads the revision *before* what it
derives, so a result is never older than the revision it is filed under: if the data moved on
in between, the revision has moved on too and the entry is never hit.

On SQLite, ``Revisions.known`` answers without the query while nothing was committed to the
database since the revision was read: ``PRAGMA data_version`` on a connection of its own
changes whenever any other connection, of this process or another, commits (8 us, never waits
for a lock). That is what lets a status poll skip the thread pool (see ``service.api.caches``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

from sqlalchemy import BindParameter, Connection, Engine, Text, bindparam, cast, func, select

from service.store.models import Evaluation, Experiment, Trial

__all__ = ["Revision", "Revisions", "experiment_revision"]

Revision = tuple[Any, ...]

_EXP_ID: BindParameter[str] = bindparam("exp_id")
_SEP = "|"


def _text(column: Any) -> Any:
    return cast(column, Text)


_TRIAL = _text(Trial.id)
for _column in (Trial.state, Trial.attempts, Trial.step, Trial.updated_at):
    _TRIAL = _TRIAL + _SEP + _text(_column)
_TRIALS = (select(_TRIAL.label("trial")).where(Trial.experiment_id == _EXP_ID)
           .order_by(Trial.id).subquery())

_EVAL = _text(Evaluation.id) + _SEP + _text(Evaluation.state) + _SEP + _text(Evaluation.updated_at)
_EVALS = (select(_EVAL.label("evaluation")).where(Evaluation.experiment_id == _EXP_ID)
          .order_by(Evaluation.id).subquery())

_REVISION = select(
    _text(Experiment.cancelled_at), _text(Experiment.finalized_at), Experiment.job_submission_id,
    Experiment.job_submissions, Experiment.mlflow_experiment_id, Experiment.mlflow_parent_run_id,
    select(func.aggregate_strings(_TRIALS.c.trial, ",")).scalar_subquery(),
    select(func.aggregate_strings(_EVALS.c.evaluation, ",")).scalar_subquery(),
).where(Experiment.id == _EXP_ID)
"""The experiment's mutable columns, its trials' fields and its evaluations' joined (NULL when
it has none)."""


def experiment_revision(conn: Connection, exp_id: str) -> Revision | None:
    """The revision of ``exp_id``; None when there is no such experiment."""
    row = conn.execute(_REVISION, {"exp_id": exp_id}).first()
    return None if row is None else tuple(row)


class Revisions:
    """Revisions read through ``engine`` (an engine for one-statement reads), and on a SQLite
    file the last ones read, valid while the database's ``data_version`` has not moved."""

    MAX_KNOWN = 4096

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        self._path = path if path and path != ":memory:" else None
        self._version: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._known: dict[str, Revision] = {}
        self._known_at: int | None = None

    def _data_version(self) -> int | None:
        if self._path is None:
            return None
        try:
            with self._lock:
                if self._version is None:  # opened once the store has made the file
                    if not os.path.exists(self._path):
                        return None
                    # timeout 0: a check never waits for a lock, it fails over to the query
                    self._version = sqlite3.connect(self._path, timeout=0, isolation_level=None,
                                                    check_same_thread=False)
                return int(self._version.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None

    def read(self, exp_id: str) -> Revision | None:
        """The revision (None: no such experiment), from the database."""
        version = self._data_version()  # first: nothing committed since -> still this revision
        with self.engine.connect() as conn:
            revision = experiment_revision(conn, exp_id)
        if version is not None and revision is not None:
            with self._lock:
                if version != self._known_at:
                    self._known, self._known_at = {}, version
                if len(self._known) < self.MAX_KNOWN:
                    self._known[exp_id] = revision
        return revision

    def known(self, exp_id: str) -> Revision | None:
        """The revision last read if nothing was committed since (SQLite), else None; no
        query, never waits."""
        version = self._data_version()
        if version is None:
            return None
        with self._lock:
            return self._known.get(exp_id) if version == self._known_at else None

    def close(self) -> None:
        with self._lock:
            if self._version is not None:
                self._version.close()
            self._path = self._version = None
