"""The names and tags the service gives MLflow objects, in one light module (no MLflow import):
the experiment's Ray Job needs them before its trials start, the controller when it creates them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from service.store import ExperimentView

EXPERIMENT_TAG = "ablate.experiment_id"
"""On the MLflow experiment, the parent run and every trial run: the ablation experiment's id."""
ROLE_TAG = "ablate.role"
"""``parent`` on the run that groups the experiment's trials and holds its comparison."""
COMPARE_TAG = "ablate.compare_sha256"
"""On the parent run: the digest of the comparison artifacts it holds."""
TRIAL_ID_TAG = "ablate.trial_id"
"""On a trial run: the store's trial id."""
VARIANT_TAG = "variant"
SEED_TAG = "seed"
FACTOR_TAG_PREFIX = "factor."
"""On a trial run, one tag per factor: ``factor.ITC = on``."""
SHARED_VIEW_KEY = "ablate-trials"
"""The name of the runs-table view the service stores on each MLflow experiment."""


def trial_tags(exp_id: str, trial_id: int, variant: str, seed: int,
               levels: dict[str, str]) -> dict[str, str]:
    """What a trial run carries, so MLflow's table can group, filter and show it."""
    return {
        EXPERIMENT_TAG: exp_id, TRIAL_ID_TAG: str(trial_id), ROLE_TAG: "trial",
        VARIANT_TAG: variant, SEED_TAG: str(seed),
        **{f"{FACTOR_TAG_PREFIX}{name}": level for name, level in levels.items()},
    }


def _column(kind: str, key: str) -> str:
    """MLflow's canonical column key, e.g. ``metrics.`mean_recall```."""
    return f"{kind}.`{key}`"


def trials_view_state(primary_metric: str, factors: list[str],
                      downstream: list[str] | None = None) -> dict[str, Any]:
    """The runs-table view MLflow's UI loads from the experiment tag
    ``mlflow.sharedViewState.<SHARED_VIEW_KEY>``: the trials (not the parent run) grouped by
    variant, each group showing the mean over seeds, with the primary metric, each downstream
    task's metrics (``downstream``), the variant, each factor and the seed as columns. Other
    metrics stay one click away (Columns); fewer columns keep the ones that answer the question
    on screen."""
    return {
        "selectedColumns": [
            _column("metrics", primary_metric),
            *(_column("metrics", m) for m in downstream or [] if m != primary_metric),
            _column("tags", VARIANT_TAG),
            *(_column("tags", f"{FACTOR_TAG_PREFIX}{f}") for f in factors),
            _column("tags", SEED_TAG),
        ],
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "tag", "groupByData": VARIANT_TAG}],
        },
        "searchFilter": f"tags.`{ROLE_TAG}` = 'trial'",
    }


def experiment_url(mlflow_ui_url: str, experiment_id: str) -> str:
    """The link the service prints: the experiment's trials in MLflow's runs table."""
    base = mlflow_ui_url.rstrip("/")
    return (f"{base}/#/experiments/{experiment_id}/runs"
            f"?viewStateShareKey={quote(SHARED_VIEW_KEY)}")


def mlflow_experiment_name(exp: ExperimentView) -> str:
    """Readable and unique: two ablations may share a name, never an id."""
    return f"{exp.name} [{exp.id}]"
