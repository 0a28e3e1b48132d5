"""The end-of-experiment step run by the reconciler: a real store, a real MLflow (SQLite tracking
store, no server), Ray unreachable on purpose (no experiment here needs it, or the test shows
that nothing is finalized while Ray cannot say whether the job still runs)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from service.execution import Executor
from service.settings import Settings
from service.store import Store
from service.tracking.names import COMPARE_TAG, mlflow_experiment_name
from tests.service.test_compare_api import MLFLOW_UI, plant_experiment


@pytest.fixture
def executor(tmp_path):
    settings = Settings(data_dir=tmp_path, ray_address="http://127.0.0.1:9",
                        mlflow_tracking_uri=f"sqlite:///{tmp_path}/ml.db", mlflow_ui_url=MLFLOW_UI)
    store = Store(settings.db_url)
    yield Executor(settings, store)
    store.close()


def _mlflow_experiment_for(executor: Executor, exp_id: str, tmp_path) -> str:
    """Where ParentRuns.prepare will find it by name (an artifact root under tmp, not ./mlruns)."""
    exp = executor.store.get_experiment(exp_id)
    return executor.parent_runs.client.create_experiment(
        mlflow_experiment_name(exp), artifact_location=(tmp_path / "art").as_uri())


def test_done_experiment_without_job_gets_parent_run_with_comparison_once(executor, tmp_path):
    """Every trial cached or finished and no job (the all-cached case): the reconciler creates
    the parent run, logs the comparison on it, ends it, and never does it twice."""
    exp_id = plant_experiment(executor.store, skip=None, one_seed=None)
    eid = _mlflow_experiment_for(executor, exp_id, tmp_path)
    assert executor.store.experiments_to_finalize() == [exp_id]

    assert executor.reconcile() == {exp_id: "finalized"}
    exp = executor.store.get_experiment(exp_id)
    assert exp.finalized_at is not None and exp.mlflow_experiment_id == eid
    ml: MlflowClient = executor.parent_runs.client
    parent = ml.get_run(exp.mlflow_parent_run_id)
    assert parent.info.status == "FINISHED"
    assert {f.path for f in ml.list_artifacts(parent.info.run_id, "compare")} >= {
        "compare/analysis.json", "compare/table.md"}
    tag = parent.data.tags[COMPARE_TAG]

    assert executor.store.experiments_to_finalize() == []
    assert executor.reconcile() == {}
    assert len(ml.search_runs([eid])) == 1  # one parent run, not one per pass
    assert ml.get_run(parent.info.run_id).data.tags[COMPARE_TAG] == tag


def test_unfinished_or_cancelled_experiments_are_not_finalized(executor):
    plant_experiment(executor.store)  # one trial still running
    cancelled = plant_experiment(executor.store, skip=None, one_seed=None)
    executor.store.mark_cancel_requested(cancelled)
    assert executor.store.experiments_to_finalize() == []


def test_nothing_is_finalized_while_ray_cannot_say_the_job_is_gone(executor, tmp_path):
    exp_id = plant_experiment(executor.store, skip=None, one_seed=None)
    _mlflow_experiment_for(executor, exp_id, tmp_path)
    executor.store.record_job_submission(exp_id, exp_id)  # a job ran it; Ray is unreachable
    actions = executor.reconcile()
    assert actions[exp_id].startswith("finalize failed")
    assert executor.store.get_experiment(exp_id).finalized_at is None
    assert executor.store.experiments_to_finalize() == [exp_id]  # the next pass tries again


def test_retry_reopens_a_finalized_experiment(executor, tmp_path):
    """Retried trials change the table: the end step must run again once they are done."""
    exp_id = plant_experiment(executor.store, one_seed=None)  # one trial left running
    _mlflow_experiment_for(executor, exp_id, tmp_path)
    trial = next(t for t in executor.store.get_experiment(exp_id).trials
                 if t.state.value == "running")
    executor.store.mark_failed(trial.id, "boom")
    assert executor.reconcile() == {exp_id: "finalized"}
    assert executor.store.retry_failed(exp_id) == 1
    exp = executor.store.get_experiment(exp_id)
    assert exp.finalized_at is None and exp_id not in executor.store.experiments_to_finalize()
    executor.store.mark_running(trial.id, worker_pid=1)
    executor.store.mark_finished(trial.id, metrics={"mean_recall": 50.0}, mlflow_run_id="r",
                                 mlflow_experiment_id="7", steps=20)
    assert executor.store.experiments_to_finalize() == [exp_id]
