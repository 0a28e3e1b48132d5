"""A Ray cluster of two nodes on one machine, without containers: the stack's head (``ray start
--head``, one CPU) and a second node (``python -m service.stack.ray_node``, i.e. ``ray start
--address``, one CPU and a ``node2`` resource), separate processes on 127.0.0.1. Checkpoints go
where a cluster of machines keeps them, in an S3 bucket (``ABLATE_STORAGE_URI``; moto's S3
server on loopback, the AWS variables in every node's environment), not on a disk the nodes
share. The real service (MLflow server, controller under uvicorn, pointed at the head) runs a
two-trial experiment: one trial lands on each node. The second node is SIGKILLed (its whole
process group: raylet, agents, workers) mid-trial; that trial resumes on the head from its
checkpoint in the bucket, the experiment finishes, and each trial has one MLflow run.
Meanwhile nothing of either node listens beyond loopback."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import pytest
from mlflow.tracking import MlflowClient

from service.settings import Settings
from service.stack.embedded import Stack, free_port
from tests.e2e.conftest import (
    beyond_loopback,
    done,
    get,
    listening,
    runs_of,
    ss_beyond_loopback,
    ss_listening,
    stack_pids,
    tiny_spec,
    trials,
)
from tests.moto_s3 import moto_s3

pytestmark = pytest.mark.slow

STEPS = 20
SPEC = tiny_spec(
    "two-nodes", STEPS, design="factorial",
    factors={"ITC": {"path": "objectives.itc.enabled", "levels": [False, True]}},
)
SPEC["base"]["set"]["init.warm_start"] = False  # no warm-start task: trials only


BUCKET = "ablate-cluster"
PREFIX = "shared"


@pytest.fixture
def s3() -> Iterator[str]:
    """moto's S3 server; every process the stack starts inherits the AWS variables."""
    with moto_s3(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture
def cluster(tmp_path: Path, s3: str) -> Iterator[Stack]:
    settings = Settings(
        data_dir=tmp_path / "data",
        port=free_port(), mlflow_port=free_port(), ray_dashboard_port=free_port(),
        max_retries=2, reconcile_interval_s=2.0,
        storage_uri=f"s3://{BUCKET}/{PREFIX}", storage_endpoint_url=s3,
    )
    stack = Stack(settings, num_cpus=1)
    try:
        stack.start()
        stack.add_ray_node("node2", num_cpus=1, resources={"node2": 1})
        yield stack
    finally:
        stack.stop()


def node_of(stack: Stack, pid: int) -> str | None:
    """Which node's process tree ``pid`` is in: ``head`` (the stack's ``ray start --head``) or
    ``node2``; None once it is gone."""
    roots = {stack.children[n].proc.pid: n for n in ("ray", "node2") if n in stack.children}
    try:
        for parent in psutil.Process(pid).parents():
            if parent.pid in roots:
                return "head" if roots[parent.pid] == "ray" else roots[parent.pid]
    except psutil.Error:
        return None
    return None


def test_trial_on_a_killed_node_resumes_on_the_head(cluster: Stack) -> None:
    start = time.monotonic()
    s = cluster.settings
    nodes = {n["node_name"]: n for n in cluster.ray_nodes() if n["state"] == "ALIVE"}
    assert len(nodes) == 2 and nodes["node2"]["resources_total"]["node2"] == 1, nodes
    assert {n["node_ip"] for n in nodes.values()} == {"127.0.0.1"}
    node_name = {n["node_id"]: "node2" if name == "node2" else "head" for name, n in nodes.items()}

    api = httpx.Client(base_url=s.controller_url, timeout=60.0)
    r = api.post("/experiments", json=SPEC)
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]

    # Where each attempt runs, by the PID it records: (trial id, attempt) -> node; and by the
    # Ray node id the API shows for it.
    seen: dict[tuple[int, int], str] = {}
    said: dict[tuple[int, int], str] = {}

    def watch(deadline_s: float, until: Any) -> dict[str, Any]:
        deadline = time.monotonic() + deadline_s
        while True:
            exp = get(api, exp_id)
            for t in trials(exp):
                if t["state"] == "running" and t["worker_pid"]:
                    node = node_of(cluster, t["worker_pid"])
                    if node is not None:
                        seen.setdefault((t["id"], t["attempts"]), node)
                    if t["worker_ray_node"]:
                        said.setdefault((t["id"], t["attempts"]),
                                        node_name.get(t["worker_ray_node"], "?"))
            if until(exp):
                return exp
            assert time.monotonic() < deadline, (exp["states"], seen)
            time.sleep(0.2)

    # Both trials run at once, one on each node (each offers one CPU, each trial takes one).
    exp = watch(240, lambda e: len({seen.get((t["id"], 1)) for t in trials(e)} - {None}) == 2
                and all(t["step"] >= 1 for t in trials(e)))
    assert sorted(seen.values()) == ["head", "node2"], seen
    (moved,) = [tid for (tid, _), node in seen.items() if node == "node2"]
    listening_both = listening(cluster)
    ss_both = ss_listening(stack_pids(cluster))

    # Kill the second node once its trial has a checkpoint (every 5 steps) behind it.
    exp = watch(240, lambda e: next(t for t in trials(e) if t["id"] == moved)["step"] >= 8)
    node2 = cluster.children.pop("node2")
    node2.remember_descendants()
    node2.kill_all()  # SIGKILL: process group (raylet, agents) and its workers
    killed_at = time.monotonic()
    assert not node2.alive()

    exp = watch(300, lambda e: next(t for t in trials(e) if t["id"] == moved)["state"]
                != "running")
    noticed_at = time.monotonic()  # the driver saw the worker die: the trial is retrying
    exp = watch(300, done)
    print(f"\nkilled at +{killed_at - start:.1f} s, noticed {noticed_at - killed_at:.1f} s "
          f"later, finished at +{time.monotonic() - start:.1f} s; attempts: {seen}")
    assert exp["status"] == "finished", [t["error"] for t in trials(exp)]
    by_id = {t["id"]: t for t in trials(exp)}
    t = by_id[moved]
    assert t["state"] == "finished" and t["attempts"] >= 2, t
    assert t["resumed_from_step"] is not None and t["resumed_from_step"] >= 5, t
    assert seen[(moved, t["attempts"])] == "head", seen  # the last attempt ran on the head
    (other,) = set(by_id) - {moved}
    assert by_id[other]["attempts"] == 1 and by_id[other]["resumed_from_step"] is None

    # The API named each attempt's Ray node, as the process trees did.
    assert said.keys() <= seen.keys() and all(said[k] == seen[k] for k in said), (said, seen)
    assert said[(moved, 1)] == "node2" and said[(moved, t["attempts"])] == "head", said
    assert node_name[t["worker_ray_node"]] == "head"
    # The host of each trial's last attempt, which both nodes here share.
    assert {x["worker_node"] for x in by_id.values()} == {socket.gethostname()}

    # The checkpoints are in the bucket, under each trial's key; none went to the local disk.
    bucket = boto3.client("s3", endpoint_url=s.storage_endpoint_url)
    listing = bucket.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/checkpoints/{exp_id}/")
    keys = [o["Key"] for o in listing.get("Contents", []) if not o["Key"].endswith("/")]
    assert {k.split("/")[3] for k in keys} == {x["trial_key"] for x in by_id.values()}, keys
    local = s.data_dir / "checkpoints"
    assert not local.exists() or not [p for p in local.rglob("*") if p.is_file()]

    # One MLflow run per trial, finished; the resumed one logged no step twice.
    mlflow = MlflowClient(s.mlflow_tracking_uri)
    runs = runs_of(mlflow, exp)
    assert sorted(r.info.run_id for r in runs) == sorted(x["mlflow_run_id"] for x in by_id.values())
    assert {r.info.status for r in runs} == {"FINISHED"}
    steps = [m.step for m in mlflow.get_metric_history(t["mlflow_run_id"], "loss")]
    assert steps == sorted(set(steps)) and steps[-1] >= STEPS - 2, steps

    # Both nodes' servers (and the workers' gRPC servers) listened on loopback only.
    assert {name for _, name, *_ in listening_both} >= {"gcs_server", "raylet"}
    assert len({pid for pid, name, *_ in listening_both if name == "raylet"}) == 2
    assert beyond_loopback(listening_both) == []
    if ss_both is not None:
        assert ss_beyond_loopback(ss_both) == []
    print(f"wall time {time.monotonic() - start:.1f} s")
