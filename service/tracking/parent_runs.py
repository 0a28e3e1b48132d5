"""The MLflow side of an ablation experiment: its MLflow experiment, its parent run, the
comparison artifacts on that run, and ending the runs nobody else will end.

One module that both the executor (submit, cancel, reconcile) and the end-of-experiment step
(``service.job.finalize``) use, so neither needs the other. The MLflow experiment and the parent run
are created before any trial starts, because concurrent first writes to a fresh SQLite-backed
MLflow store race. Every step is idempotent: the job and the reconciler may overlap.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from service import views
from service.settings import Settings
from service.store import ExperimentView, Store
from service.tracking.names import (
    COMPARE_TAG,
    EXPERIMENT_TAG,
    ROLE_TAG,
    SHARED_VIEW_KEY,
    mlflow_experiment_name,
    trials_view_state,
)
from trainer.metric_names import DOWNSTREAM_METRICS
from trainer.tracking import ensure_experiment

SHARED_VIEW_TAG = f"mlflow.sharedViewState.{SHARED_VIEW_KEY}"
"""The experiment tag MLflow's UI reads a shared runs-table view from (``viewStateShareKey``)."""


class ParentRuns:
    """Creates, reopens, fills and ends the MLflow objects of the service's experiments."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.client = MlflowClient(settings.mlflow_tracking_uri)

    def prepare(self, exp: ExperimentView) -> tuple[str, str | None]:
        """The experiment's MLflow experiment and parent run, created once, before any trial.

        The MLflow experiment opens in MLflow's model-training view, its trials grouped by
        variant with the factors, the seed and the metrics as columns (``trials_view_state``).
        """
        view = trials_view_state(exp.primary_metric, _factors(exp), _downstream(exp))
        if exp.mlflow_experiment_id:  # tasks evaluated later get their columns too
            self.client.set_experiment_tag(exp.mlflow_experiment_id, SHARED_VIEW_TAG,
                                           json.dumps(view))
            if exp.mlflow_parent_run_id:  # a retry re-opens a parent ended by an earlier job
                run = self.client.get_run(exp.mlflow_parent_run_id)
                if run.info.status != "RUNNING":
                    self.client.update_run(exp.mlflow_parent_run_id, status="RUNNING")
            return exp.mlflow_experiment_id, exp.mlflow_parent_run_id
        eid = ensure_experiment(
            self.client, mlflow_experiment_name(exp),
            tags={EXPERIMENT_TAG: exp.id, SHARED_VIEW_TAG: json.dumps(view)},
        )
        parent = self.client.create_run(
            eid, run_name=f"{exp.name} (all trials)",
            tags={EXPERIMENT_TAG: exp.id, ROLE_TAG: "parent"},
        ).info.run_id
        self.store.set_mlflow(exp.id, eid, parent)
        return eid, parent

    def end_orphans(self, exp: ExperimentView, status: str = "KILLED",
                    include_parent: bool = False) -> int:
        """End RUNNING MLflow runs of an experiment whose job is gone (nobody will end them)."""
        if not exp.mlflow_experiment_id:
            return 0
        runs = self.client.search_runs(
            [exp.mlflow_experiment_id], filter_string="attributes.status = 'RUNNING'",
            max_results=1000,
        )
        n = 0
        for run in runs:
            if run.info.run_id == exp.mlflow_parent_run_id and not include_parent:
                continue
            self.client.set_terminated(run.info.run_id, status=status)
            n += 1
        return n

    def end_parent(self, exp: ExperimentView) -> None:
        """End the parent run of an experiment with no active trials left."""
        if not exp.mlflow_parent_run_id:
            return
        run = self.client.get_run(exp.mlflow_parent_run_id)
        if run.info.status == "RUNNING":
            ok = exp.trials_status == "finished"
            self.client.set_terminated(
                exp.mlflow_parent_run_id,
                status=RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED),
            )

    def log_comparison(self, exp_id: str) -> bool:
        """Log the comparison table (json, markdown, csv) and figures on the parent run.

        Idempotent: fixed artifact paths under ``compare/`` are overwritten, and a parent run
        whose ``ablate.compare_sha256`` tag already matches is left alone, so a restarted job
        neither duplicates nor rewrites them. Returns whether anything was logged.
        """
        exp = self.store.get_experiment(exp_id, with_history=True)
        if not exp.mlflow_parent_run_id:
            return False
        files = views.artifacts(
            views.analyze_experiment(exp, views.CompareQuery(), self.settings.mlflow_ui_url)
        )
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name])
        sha = digest.hexdigest()
        run = self.client.get_run(exp.mlflow_parent_run_id)
        if run.data.tags.get(COMPARE_TAG) == sha:
            return False
        with tempfile.TemporaryDirectory() as tmp:
            for name, body in files.items():
                (Path(tmp) / name).write_bytes(body)
            self.client.log_artifacts(exp.mlflow_parent_run_id, tmp,
                                      artifact_path=views.ARTIFACT_DIR)
        self.client.set_tag(exp.mlflow_parent_run_id, COMPARE_TAG, sha)
        return True


def _factors(exp: ExperimentView) -> list[str]:
    """The factor names, in the order the variants list them."""
    return list(dict.fromkeys(f for v in exp.variants for f in v.levels))


def _downstream(exp: ExperimentView) -> list[str]:
    """Every metric of the downstream tasks a variant enables (the view's extra columns)."""
    enabled = {t for v in exp.variants
               for t in ((v.config.get("eval") or {}).get("downstream") or {}).get("tasks", [])}
    return [m for task, names in DOWNSTREAM_METRICS.items() if task in enabled for m in names]
