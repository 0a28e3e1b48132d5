"""The names and tags the service gives MLflow objects, in one light module (no MLflow import):
the experiment's Ray Job needs them before its trials start, the controller when it creates them.
"""

from __future__ import annotations

from service.store import ExperimentView

EXPERIMENT_TAG = "ablate.experiment_id"
"""On the MLflow experiment, the parent run and every trial run: the ablation experiment's id."""
ROLE_TAG = "ablate.role"
"""``parent`` on the run that groups the experiment's trials and holds its comparison."""
COMPARE_TAG = "ablate.compare_sha256"
"""On the parent run: the digest of the comparison artifacts it holds."""


def mlflow_experiment_name(exp: ExperimentView) -> str:
    """Readable and unique: two ablations may share a name, never an id."""
    return f"{exp.name} [{exp.id}]"
