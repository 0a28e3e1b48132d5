"""The end-of-experiment step: the comparison on the MLflow parent run, then that run ended.

Run by the experiment's job after its last trial and, for anything a job could not finish (a job
lost between its last trial and this step, an experiment whose trials were all cached so no job
ran), by the controller's reconciler. Every part is idempotent, so the two may overlap.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.tracking import MlflowClient

from service import views
from service.mlflow_names import COMPARE_TAG
from service.settings import Settings
from service.store import ACTIVE_STATES, Store

if TYPE_CHECKING:
    from service.execution import Executor

log = logging.getLogger(__name__)


def log_comparison(store: Store, exp_id: str, settings: Settings) -> bool:
    """Log the comparison table (json, markdown, csv) and figures on the parent run.

    Idempotent: fixed artifact paths under ``compare/`` are overwritten, and a parent run whose
    ``ablate.compare_sha256`` tag already matches is left alone, so a restarted job neither
    duplicates nor rewrites them. Returns whether anything was logged.
    """
    exp = store.get_experiment(exp_id, with_history=True)
    if not exp.mlflow_parent_run_id:
        return False
    files = views.artifacts(
        views.analyze_experiment(exp, views.CompareQuery(), settings.mlflow_ui_url)
    )
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name])
    sha = digest.hexdigest()
    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(exp.mlflow_parent_run_id)
    if run.data.tags.get(COMPARE_TAG) == sha:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        for name, body in files.items():
            (Path(tmp) / name).write_bytes(body)
        client.log_artifacts(exp.mlflow_parent_run_id, tmp, artifact_path=views.ARTIFACT_DIR)
    client.set_tag(exp.mlflow_parent_run_id, COMPARE_TAG, sha)
    return True


def finalize(executor: Executor, exp_id: str) -> bool:
    """Log the comparison and end the parent run of an experiment with no active trial left.

    An experiment whose trials were all cached gets its MLflow experiment and parent run here,
    so every experiment has a parent run holding its comparison. Returns False when there is
    nothing to do (already finalized, cancelled, or trials still active).
    """
    store = executor.store
    exp = store.get_experiment(exp_id)
    if (exp.finalized_at is not None or exp.cancelled_at is not None
            or any(t.state in ACTIVE_STATES for t in exp.trials)):
        return False
    if not exp.mlflow_parent_run_id:
        executor.prepare_mlflow(exp)
    # before the parent ends, so the finished run already holds its table
    log_comparison(store, exp_id, executor.settings)
    executor.end_parent(store.get_experiment(exp_id))
    store.mark_finalized(exp_id)
    log.info("experiment %s: comparison logged, parent run ended", exp_id)
    return True
