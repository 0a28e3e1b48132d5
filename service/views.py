"""The one place where the store's experiment becomes the analysis' input, and where /compare's
query values are checked.

``service.analysis`` is pure and knows nothing of the store, and the store knows nothing of
statistics; this module maps one onto the other (variants in spec order with their factor
levels, the spec's baseline and metrics, each trial's metrics, learning curve and MLflow run
link), so the API, the CLI-facing routes and the supervisor's MLflow artifacts all analyse the
same thing. No SQL (that is ``service.store``) and no HTTP (that is ``service.api``) here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from service import analysis as an
from service import report
from service.job.looks import sequential_section
from service.settings import Settings
from service.specs import RunOptions
from service.specs.downstream import (
    DOWNSTREAM_METRICS,
    TASK_PRIMARY,
    config_tasks,
    finetune_samples,
    tasks_metrics,
)
from service.store import ExperimentView as StoredExperiment
from service.store import Store, TrialView
from trainer.metric_names import finetune_flops_metric, finetune_seconds_metric

Format = Literal["json", "markdown", "csv", "latex", "html", "png"]
CiMethod = Literal["t", "bootstrap"]

ARTIFACT_DIR = "compare"
"""Folder of the comparison artifacts on the experiment's MLflow parent run."""

# The analyze() argument an AnalysisError's ``field`` names -> the query parameter it came from.
_QUERY_FIELD = {
    "baseline": "baseline", "alpha": "alpha", "correction": "correction", "ci_method": "ci",
    "n_boot": "ci", "bootstrap_method": "ci",
}


@dataclass(frozen=True)
class CompareQuery:
    """What a client may choose about a comparison (the /compare query, the CLI's options)."""

    baseline: str | None = None
    alpha: float = 0.05
    correction: str = "holm"
    ci: CiMethod = "t"


class QueryError(ValueError):
    """A comparison option the analysis refused; ``field`` is the query parameter to blame."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def run_url(mlflow_ui_url: str, experiment_id: str | None, run_id: str | None) -> str | None:
    """Link to a run in the MLflow UI; None when there is no UI URL or no run yet."""
    if not (mlflow_ui_url and experiment_id and run_id):
        return None
    return f"{mlflow_ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def learning_curve(history: dict[str, list[tuple[int, float]]] | None, metric: str,
                   eval_split: str) -> list[tuple[int, float]]:
    """The curve of ``metric`` over training steps, from the trainer's history.

    The trainer logs the final evaluation as ``<metric>`` (one point, on ``eval.split``) and the
    periodic evaluations as ``val_<metric>`` (on the val split). Only when the final evaluation
    is on the val split too are both the same quantity, and then they form one curve; a test
    number is never joined to val numbers.
    """
    if not history:
        return []
    final = list(history.get(metric, []))
    if eval_split != "val" or f"val_{metric}" not in history:
        return final
    points = dict(history[f"val_{metric}"])
    points.update(final)
    return sorted(points.items())


def _eval_split(config: dict) -> str:
    return str((config.get("eval") or {}).get("split", "test"))


def analysis_view(exp: StoredExperiment, mlflow_ui_url: str = "") -> an.ExperimentView:
    """The analysis' input for a stored experiment (load it ``with_history`` for curves).

    The metrics are the spec's, then those of every downstream task a variant enables (a
    task evaluated later extends the spec's ``reported`` too); each task is one block."""
    # only the metrics: a spec stored before a rule of the schema tightened still compares
    spec = RunOptions.model_validate(exp.spec)
    primary = spec.metrics.primary
    enabled = [t for v in exp.variants for t in config_tasks(v.config)]
    metrics = list(dict.fromkeys([primary, *spec.metrics.reported, *tasks_metrics(enabled)]))
    tasks = {t: [m for m in metrics if m in names] for t, names in DOWNSTREAM_METRICS.items()}
    tasks = {t: ms for t, ms in tasks.items() if ms}
    trials: list[an.TrialRecord] = []
    for v in exp.variants:
        split = _eval_split(v.config)
        trials.extend(_record(t, v.name, primary, split, mlflow_ui_url, v.config)
                      for t in v.trials)
    return an.ExperimentView(
        tasks=tasks, task_primary={t: TASK_PRIMARY[t] for t in tasks},
        directions=dict.fromkeys((m for ms in tasks.values() for m in ms), "higher"),
        name=exp.name,
        design=exp.design,
        variants=[an.VariantView(name=v.name, factor_levels=dict(v.levels))
                  for v in exp.variants],  # the store keeps spec order (position)
        baseline=exp.baseline,
        primary_metric=primary,
        metrics=metrics,
        trials=trials,
    )


def _record(t: TrialView, variant: str, primary: str, split: str, ui: str,
            config: dict[str, Any]) -> an.TrialRecord:
    curve = learning_curve(t.history, primary, split)
    metrics = {k: float(v) for k, v in t.metrics.items() if isinstance(v, int | float)}
    evaluated = [task for task in DOWNSTREAM_METRICS if TASK_PRIMARY[task] in metrics]
    if evaluated:  # what its fine-tunes drew and took, beside pretraining's
        metrics["cost_finetune_samples"] = float(sum(finetune_samples(config, task)
                                                     for task in evaluated))
        for total, name in (("cost_finetune_s", finetune_seconds_metric),
                            ("cost_finetune_flops", finetune_flops_metric)):
            parts = [metrics.get(name(task)) for task in evaluated]
            if all(p is not None for p in parts):  # a part unknown: the sum would mislead
                metrics[total] = float(sum(p for p in parts if p is not None))
    return an.TrialRecord(
        variant=variant, seed=t.seed, status=t.state.value,
        metrics=metrics,
        history={primary: curve} if curve else {},
        mlflow_url=run_url(ui, t.mlflow_experiment_id, t.mlflow_run_id),
        fingerprints=t.fingerprints,
    )


def analyze_experiment(exp: StoredExperiment, query: CompareQuery,
                       mlflow_ui_url: str = "") -> an.Analysis:
    """``analysis.analyze`` over a stored experiment; a refused option -> :class:`QueryError`."""
    view = analysis_view(exp, mlflow_ui_url)
    if query.baseline is not None and query.baseline not in {v.name for v in view.variants}:
        raise QueryError("baseline", f"{query.baseline!r} is not a variant of this experiment; "
                         f"expected one of {[v.name for v in view.variants]}")
    try:
        result = an.analyze(view, baseline=query.baseline, alpha=query.alpha,
                            correction=query.correction, ci_method=query.ci)
        result.sequential = sequential_section(exp)
        return result
    except an.AnalysisError as err:
        field = _QUERY_FIELD.get(err.field)
        if field is None:  # not about an option the client chose: a bug, let it surface
            raise
        raise QueryError(field, err.reason) from err


def compare(store: Store, exp_id: str, fmt: str, query: CompareQuery,
            settings: Settings) -> tuple[bytes, str]:
    """(body, media type) of the comparison in ``fmt``. Blocking (SQL, statistics, and for
    png/html matplotlib for seconds): call it from a worker thread, never the event loop."""
    exp = store.get_experiment(exp_id, with_history=True)
    return report.render(analyze_experiment(exp, query, settings.mlflow_ui_url), fmt)


def artifacts(a: an.Analysis) -> dict[str, bytes]:
    """What the MLflow parent run keeps: the table (json, markdown, csv) and the figures."""
    out = {
        "analysis.json": report.render(a, "json")[0],
        "table.md": report.render(a, "markdown")[0],
        "table.csv": report.render(a, "csv")[0],
    }
    out.update(report.render_figures(a))
    return out
