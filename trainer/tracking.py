"""One trial = one MLflow run, found again by its trial-key tag, so a retried or resumed trial
continues its own run instead of leaving a duplicate, and every run ends FINISHED or FAILED."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from trainer.environment import stack_tags

TRIAL_KEY_TAG = "trial_key"
FINAL_METRICS_ARTIFACT = "final_metrics.json"
MAX_BATCH = 900  # MLflow accepts at most 1000 entities per log_batch
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
"""MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, prompts)."""
MODEL_TRAINING_KIND = "custom_model_development"
"""The kind that makes the UI open the experiment on its runs, as a model-training experiment."""


def git_commit() -> str | None:
    """The commit the trainer runs from, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def ensure_experiment(
    client: MlflowClient, name: str, tags: dict[str, str] | None = None
) -> str:
    """The id of the MLflow experiment ``name``, creating it with ``tags`` if needed (race-safe:
    of two concurrent creations one wins and the other finds its experiment). The experiment
    always ends up marked as model training (see ``EXPERIMENT_KIND_TAG``), an existing one too,
    unless someone chose another kind for it (a kind the UI only inferred is replaced)."""
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(
                name, tags={**(tags or {}), EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND}
            )
        except MlflowException:
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    kind = found.tags.get(EXPERIMENT_KIND_TAG, "")
    if found.lifecycle_stage == "active" and (not kind or kind.endswith("_inferred")):
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    return found.experiment_id


class TrialRun:
    """The MLflow run of one trial: opened (created or resumed), logged to, closed."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        trial_key: str,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        torch_threads: int | None = None,
    ) -> None:
        self.client = MlflowClient(tracking_uri)
        self.trial_key = trial_key
        self.experiment_id = experiment_id or ensure_experiment(
            self.client, experiment_name or "Default"
        )
        self.run_name = run_name
        self.tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.torch_threads = torch_threads
        self.run_id: str | None = None
        self.last_logged_step = -1

    def find(self) -> Any | None:
        """The newest run tagged with this trial key, if any."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.{TRIAL_KEY_TAG} = '{self.trial_key}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def finished_metrics(self) -> dict[str, Any] | None:
        """The recorded final result when this trial's run already FINISHED, else None."""
        run = self.find()
        if run is None or run.info.status != "FINISHED":
            return None
        self.run_id = run.info.run_id
        return self.read_json(FINAL_METRICS_ARTIFACT)

    def open(self, params: dict[str, Any]) -> str:
        """Resume this trial's run if one exists (setting it RUNNING again), else create it. Either
        way the run's stack tags (``trainer.environment``) describe this attempt's machine."""
        stack = stack_tags(self.torch_threads)
        run = self.find()
        if run is not None:
            self.run_id = run.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            self.set_tags(stack)
            history = self.client.get_metric_history(self.run_id, "loss")
            self.last_logged_step = max((m.step for m in history), default=-1)
            return self.run_id
        tags = {TRIAL_KEY_TAG: self.trial_key, **stack, **self.tags}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        created = self.client.create_run(self.experiment_id, tags=tags, run_name=self.run_name)
        self.run_id = created.info.run_id
        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 90):  # MLflow caps params per batch at 100
            self.client.log_batch(self.run_id, params=items[i : i + 90])
        return self.run_id

    @property
    def open_run_id(self) -> str:
        """The run's id; logging to a run that was never opened is a bug, not a silent no-op."""
        if self.run_id is None:
            raise RuntimeError(f"the run of trial {self.trial_key} is not open")
        return self.run_id

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.open_run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int, *, force: bool = False) -> None:
        """Log scalars at ``step``; steps already logged before a resume are skipped."""
        if step <= self.last_logged_step and not force:
            return
        ts = _now_ms()
        items = [Metric(k, float(v), ts, step) for k, v in sorted(metrics.items())]
        for i in range(0, len(items), MAX_BATCH):
            self.client.log_batch(self.open_run_id, metrics=items[i : i + MAX_BATCH])

    def log_json(self, name: str, obj: Any) -> None:
        self.client.log_text(self.open_run_id, json.dumps(obj, indent=2, sort_keys=True), name)

    def read_json(self, name: str) -> Any | None:
        """A JSON artifact of this run, or None when it has none of that name."""
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(self.open_run_id, name, tmp)
            except (MlflowException, OSError):
                return None
            return json.loads(Path(path).read_text())

    def log_artifact(self, path: Path) -> None:
        """A file (say, the warm start's weights) as an artifact of this run."""
        self.client.log_artifact(self.open_run_id, str(path))

    def close(self, ok: bool) -> None:
        status = RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED)
        self.client.set_terminated(self.open_run_id, status=status)


def _now_ms() -> int:
    return int(time.time() * 1000)
