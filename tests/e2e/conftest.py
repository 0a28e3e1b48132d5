"""One real stack for the e2e tests: a Ray head with its dashboard (own temp dir, free ports), an
MLflow server on SQLite, and the controller under uvicorn, all on 127.0.0.1, stopped at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient

from service.settings import Settings
from service.stack import Stack, free_port

# Small enough that a trial takes seconds on 2 cores, big enough to evaluate retrieval.
TINY = {
    "schedule.warmup_steps": 2,
    "data.num_train_images": 200,
    "data.num_val_images": 20,
    "data.num_test_images": 50,
    "eval.rerank_k": 4,
    "eval.batch_size": 64,
    "runtime.log_every": 2,
    "runtime.checkpoint_every": 5,
    "init.steps": 40,  # the tiny preset's warm start, shortened
}


def tiny_spec(name: str, steps: int, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "base": {"preset": "tiny", "set": {**TINY, "schedule.steps": steps}},
        "seeds": 1,
        "resources": {"cpus": 1},
        "metrics": {"primary": "mean_recall", "reported": ["mean_recall", "t2i_r1", "i2t_r1"]},
    }
    spec.update(extra)
    return spec


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("ablate"),
        port=free_port(), mlflow_port=free_port(), ray_dashboard_port=free_port(),
        max_retries=2, reconcile_interval_s=2.0, unschedulable_after_s=3.0,
    )
    s = Stack(settings, num_cpus=2)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.settings.controller_url, timeout=120.0) as c:
        yield c


@pytest.fixture(scope="session")
def mlflow(stack: Stack) -> MlflowClient:
    return MlflowClient(stack.settings.mlflow_tracking_uri)


def get(api: httpx.Client, exp_id: str) -> dict[str, Any]:
    """GET an experiment, riding out a controller restart."""
    for _ in range(100):
        try:
            r = api.get(f"/experiments/{exp_id}")
            r.raise_for_status()
            return r.json()
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("controller unreachable")


def wait_for(api: httpx.Client, exp_id: str, pred: Callable[[dict[str, Any]], bool],
             timeout: float = 240.0, interval: float = 0.2) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    exp = get(api, exp_id)
    while not pred(exp):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last state: {exp['status']} {exp['states']} "
                                 f"{[t['error'] for v in exp['variants'] for t in v['trials']]}")
        time.sleep(interval)
        exp = get(api, exp_id)
    return exp


def done(exp: dict[str, Any]) -> bool:
    return exp["status"] in ("finished", "failed", "cancelled")


def trials(exp: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(t, variant=v["name"]) for v in exp["variants"] for t in v["trials"]]


def runs_of(mlflow: MlflowClient, exp: dict[str, Any]) -> list[Any]:
    """Every trial run (not the parent) in the experiment's MLflow experiment."""
    runs = mlflow.search_runs([exp["mlflow_experiment_id"]], max_results=1000)
    return [r for r in runs if r.data.tags.get("ablate.role") != "parent"]
