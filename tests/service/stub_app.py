"""The real app on a real SQLite store with a stand-in executor, for tests of the HTTP API.

Ray and MLflow point at a closed port and ``StubExecutor`` records what it was asked to submit,
as a reachable cluster would take it, so a POST that passes stores its experiment and answers
201 without any server running.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.api import create_app
from service.settings import Settings

SMALL = {"schedule.steps": 10}
GOOD = {
    "name": "ok", "base": {"preset": "tiny", "set": SMALL}, "seeds": 2,
    "factors": {"ITC": {"path": "objectives.itc.enabled", "levels": [False, True]}},
}
JSON = {"content-type": "application/json"}
YAML = {"content-type": "application/yaml"}


class StubExecutor:
    """Takes the place of Ray and MLflow: records the submissions, as a reachable cluster would."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, exp_id: str) -> str:
        self.submitted.append(exp_id)
        return exp_id

    def cancel(self, exp_id: str) -> int:
        return 0


def make_client(tmp_path, **settings) -> TestClient:
    s = Settings(data_dir=tmp_path, max_variants=8, max_trials=20,
                 ray_address="http://127.0.0.1:9", mlflow_tracking_uri="http://127.0.0.1:9",
                 **settings)
    app = create_app(s, reconcile=False, executor=StubExecutor())
    client = TestClient(app, raise_server_exceptions=False)
    client.store = app.state.store
    return client
