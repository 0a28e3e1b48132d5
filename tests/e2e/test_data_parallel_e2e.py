"""A data-parallel trial through the real service: ``resources.workers: 2`` runs the trial as a
Ray Train ``TorchTrainer`` of 2 gloo workers (1 CPU each) from its Tune trial, rank 0 reporting
progress to the store and logging the trial's one MLflow run. One of the two workers is
SIGKILLed mid-trial: Tune retries the trial (a new Train run) and every rank resumes from the
trial's checkpoint, which rank 0 wrote."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from tests.e2e.conftest import done, runs_of, stack_pids, tiny_spec, trials, wait_for

pytestmark = pytest.mark.slow


def train_workers(stack) -> list[psutil.Process]:  # noqa: ANN001
    """The stack's Ray Train worker processes (Ray titles them after the actor's class)."""
    found = []
    for pid in stack_pids(stack):
        try:
            p = psutil.Process(pid)
            if "RayTrainWorker" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_a_killed_worker_resumes_with_its_peer_from_the_checkpoint(stack, api, mlflow):
    steps = 24
    spec = tiny_spec("data-parallel-kill", steps,
                     resources={"workers": 2, "cpus_per_worker": 1},
                     design="explicit", variants=[{"name": "dp"}])
    spec["base"]["set"]["data.batch_size"] = 16
    r = api.post("/experiments", json=spec)
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]
    # Past the first checkpoint (every 5 steps): then one of the two workers dies.
    exp = wait_for(api, exp_id, lambda e: done(e) or trials(e)[0]["step"] >= 8, timeout=420)
    assert not done(exp), "the trial ended before a worker could be killed"
    workers = train_workers(stack)
    assert len(workers) == 2, [p.cmdline() for p in workers]
    os.kill(workers[1].pid, signal.SIGKILL)

    exp = wait_for(api, exp_id, done, timeout=420)
    assert exp["status"] == "finished", exp
    (trial,) = trials(exp)
    assert trial["state"] == "finished" and trial["step"] == steps, trial
    assert trial["attempts"] >= 2, trial
    assert trial["resumed_from_step"] is not None and trial["resumed_from_step"] >= 5, trial
    # Each attempt was a Train run of its own; the trial kept its one MLflow run.
    attempts = sorted((stack.settings.data_dir / "train").glob(
        f"{exp_id}-trial_{trial['id']}-attempt_*"))
    assert len(attempts) == trial["attempts"], attempts
    assert list(attempts[-1].glob("checkpoint_*/report.json"))  # rank 0's report, as Train keeps it
    (run,) = runs_of(mlflow, exp)
    assert run.info.status == "FINISHED" and run.info.run_id == trial["mlflow_run_id"]
    logged = [m.step for m in mlflow.get_metric_history(run.info.run_id, "loss")]
    # rank 0 alone logs, every second step once: none twice across the two attempts, none lost
    assert logged == list(range(2, steps + 1, 2)), logged
