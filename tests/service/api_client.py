"""The real app, in-process, on a real SQLite store, for tests of the HTTP API.

Ray and MLflow are addresses where nothing listens (``CLOSED``), so the real ``Executor`` fails
to submit at once: a POST that passes stores its experiment and answers 201 with a
``submit_error`` (the reconciler would submit it later), as it does while Ray is down. What was
stored is read back from the store (``client.store``), not from a stand-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.api import create_app
from service.settings import Settings

CLOSED = "http://127.0.0.1:9"
"""The discard port: nothing listens there, so a connection is refused at once."""

SMALL = {"schedule.steps": 10}
GOOD = {
    "name": "ok", "base": {"preset": "tiny", "set": SMALL}, "seeds": 2,
    "factors": {"ITC": {"path": "objectives.itc.enabled", "levels": [False, True]}},
}
JSON = {"content-type": "application/json"}
YAML = {"content-type": "application/yaml"}


def offline_settings(tmp_path: Path, **settings: Any) -> Settings:
    """Small limits, and Ray and MLflow at ``CLOSED``."""
    return Settings(**{"data_dir": tmp_path, "max_variants": 8, "max_trials": 20,
                       "ray_address": CLOSED, "mlflow_tracking_uri": CLOSED, **settings})


def make_client(tmp_path: Path, **settings: Any) -> TestClient:
    app = create_app(offline_settings(tmp_path, **settings), reconcile=False)
    client = TestClient(app, raise_server_exceptions=False)
    client.store = app.state.store
    return client
