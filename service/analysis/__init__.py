"""Seed-aware statistics for ablation experiments.

Pure package: numbers in, numbers out. No web framework, database, tracking server or
plotting here, so it can be unit-tested on planted data and reused by the API, the CLI
and the report renderers (``service.report``). One module per step, this one runs them:

* ``schema``: the input view and the ``Analysis`` result (pydantic), metric directions;
* ``errors``: ``AnalysisError(field, reason)``, raised whenever the input is refused;
* ``summaries``: trials -> one dense per-seed array; per-variant means, stds, intervals;
* ``pairwise``: variant - reference tests, effect sizes, corrections, verdicts;
* ``factorial``: factor main effects and interactions (OLS + ANOVA);
* ``curves``: learning curves per variant;
* ``pairing``: whether a seed's trials in two arms shared their randomness (else Welch);
* ``cost``: samples, training FLOPs and wall time per arm, relative to the baseline;
* ``downstream``, ``multiplicity``: a block per downstream task, the Meta-Sum, and Holm
  across variants x tasks' primary metrics (one declared family).

Conventions (also recorded in ``Analysis.notes`` so a report states them):

* A trial counts as done when its status is ``finished`` or ``cached``; every other status
  is unfinished. A seed that has a done trial is never counted as unfinished, so a failed
  attempt followed by a successful retry counts once, as done.
* ``delta`` is always ``variant - reference`` in the metric's own units; the metric's
  direction only decides whether a significant delta is "better" or "worse".
* Confidence level is ``1 - alpha``. Interval endpoints are per comparison (not adjusted);
  the verdict uses the multiplicity-corrected p value. A correction family is one metric x
  one kind of comparison (all variants vs the baseline, or all rows vs the previous row).
* Paired t-test when both sides have exactly the same seeds (>= 2) and their trials'
  fingerprints agree (``pairing``); otherwise Welch.
"""

from __future__ import annotations

import math
from typing import Literal

from service.analysis.cost import arm_costs
from service.analysis.curves import learning_curves
from service.analysis.downstream import META_SUM, downstream_section, family_note, with_meta_sum
from service.analysis.errors import AnalysisError
from service.analysis.factorial import factorial_effects
from service.analysis.pairwise import compare_pairs, correct_pvalues, holm
from service.analysis.schema import (
    BOOTSTRAP_METHODS,
    EFFECT_SIZE_CI_METHOD,
    RESULT_STATUSES,
    Analysis,
    Cell,
    Comparison,
    Curve,
    DesignKind,
    Direction,
    Downstream,
    EffectSize,
    ExperimentView,
    FactorEffect,
    Interval,
    TestKind,
    TrialLink,
    TrialRecord,
    VariantResult,
    VariantView,
    Verdict,
    guess_direction,
    metric_direction,
)
from service.analysis.summaries import Boot, cell_summaries, collect_table

__all__ = [
    "BOOTSTRAP_METHODS",
    "META_SUM",
    "EFFECT_SIZE_CI_METHOD",
    "RESULT_STATUSES",
    "Analysis",
    "AnalysisError",
    "Cell",
    "Comparison",
    "Curve",
    "DesignKind",
    "Direction",
    "Downstream",
    "EffectSize",
    "ExperimentView",
    "FactorEffect",
    "Interval",
    "TestKind",
    "TrialLink",
    "TrialRecord",
    "VariantResult",
    "VariantView",
    "Verdict",
    "analyze",
    "correct_pvalues",
    "holm",
    "metric_direction",
]


def _validate(
    view: ExperimentView,
    baseline: str,
    alpha: float,
    correction: str,
    ci_method: str,
    n_boot: int,
    bootstrap_method: str,
) -> None:
    """Fail early, before any statistics, with an :class:`AnalysisError` naming the argument."""
    from statsmodels.stats.multitest import multipletests

    names = [v.name for v in view.variants]
    if not names:
        raise AnalysisError("view.variants", "empty: nothing to analyze")
    if len(set(names)) != len(names):
        raise AnalysisError("view.variants", "duplicate names")
    if baseline not in names:
        raise AnalysisError("baseline", f"{baseline!r} is not a variant of {view.name!r}")
    if not 0 < alpha < 1:
        raise AnalysisError("alpha", f"must be in (0, 1), got {alpha}")
    if ci_method not in ("t", "bootstrap"):
        raise AnalysisError("ci_method", f"must be 't' or 'bootstrap', got {ci_method!r}")
    if ci_method == "bootstrap":
        if bootstrap_method not in BOOTSTRAP_METHODS:
            raise AnalysisError("bootstrap_method", f"must be one of {BOOTSTRAP_METHODS}")
        if n_boot < 100:
            raise AnalysisError("n_boot", f"must be >= 100, got {n_boot}")
    if correction not in ("none", "holm"):
        try:
            multipletests([0.5], alpha=alpha, method=correction)
        except Exception as exc:
            raise AnalysisError(
                "correction",
                f"{correction!r} is not a statsmodels multipletests method "
                "(e.g. 'holm', 'bonferroni', 'fdr_bh') or 'none'",
            ) from exc


def _metric_list(view: ExperimentView) -> list[str]:
    """Spec metrics with the primary metric first if the spec forgot it."""
    metrics = list(dict.fromkeys(view.metrics))
    if view.primary_metric not in metrics:
        metrics.insert(0, view.primary_metric)
    return metrics


def _best(
    cells: list[dict[str, Cell]],
    names: list[str],
    metrics: list[str],
    directions: dict[str, Direction],
) -> dict[str, list[str]]:
    """Best variant(s) per metric by mean, respecting direction; ties all win."""
    best: dict[str, list[str]] = {}
    for m in metrics:
        means = [
            (mean, n) for c, n in zip(cells, names, strict=True) if (mean := c[m].mean) is not None
        ]
        if not means:
            best[m] = []
            continue
        pick = max if directions[m] == "higher" else min
        top = pick(x for x, _ in means)
        best[m] = [n for x, n in means if math.isclose(x, top, rel_tol=1e-12, abs_tol=1e-12)]
    return best


def _global_notes(
    conf: float, correction: str, boot: Boot | None, design: DesignKind, guessed: list[str]
) -> list[str]:
    """Statistical conventions a report must state."""
    pct = f"{conf:.0%}"
    notes = [
        f"Intervals: {pct} "
        + (
            "t intervals over seeds."
            if boot is None
            else f"bootstrap ({boot.method}, {boot.n_resamples} resamples, seed {boot.seed}); "
            "with few seeds bootstrap intervals tend to be too narrow."
        ),
        "Delta = variant - reference. Paired t-test when both have the same seeds (>= 2) and "
        "their trials' fingerprints (data order, initial weights, random streams) agree, "
        "otherwise Welch t-test.",
        f"p values corrected with {correction} within each metric across variants; "
        "verdicts use corrected p; delta intervals are not adjusted.",
        "Effect sizes: Cohen's d_z (paired) or Hedges' g (Welch), signed like delta; "
        f"CI by {EFFECT_SIZE_CI_METHOD}.",
    ]
    if design == "add_one_in":
        notes.append(
            "add_one_in: each row is also compared with the previous row "
            "(separate correction family)."
        )
    if guessed:
        notes.append("Direction guessed as higher-is-better for: " + ", ".join(guessed) + ".")
    return notes


def analyze(
    view: ExperimentView,
    *,
    baseline: str | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
    ci_method: Literal["t", "bootstrap"] = "t",
    n_boot: int = 2000,
    directions: dict[str, str] | None = None,
    bootstrap_method: str = "percentile",
    boot_seed: int = 0,
) -> Analysis:
    """Summarise every variant x metric and compare each variant with the baseline.

    ``directions`` overrides the name-based guess of :func:`metric_direction`.
    ``ci_method="bootstrap"`` replaces t intervals (means and deltas) by
    ``scipy.stats.bootstrap`` intervals with a fixed ``boot_seed``; p values stay t-test.
    A refused argument or view raises :class:`AnalysisError`, whose ``field`` names it.
    """
    baseline = baseline or view.baseline
    _validate(view, baseline, alpha, correction, ci_method, n_boot, bootstrap_method)
    view = with_meta_sum(view)
    conf = 1.0 - alpha
    boot = Boot(bootstrap_method, n_boot, boot_seed) if ci_method == "bootstrap" else None
    metrics = _metric_list(view)
    known = {**view.directions, **(directions or {})}
    dirs = {m: metric_direction(m, known) for m in metrics}
    guessed = [m for m in metrics if m not in known and guess_direction(m) is None]
    table = collect_table(view, metrics)
    cells = cell_summaries(table, conf, boot)
    names = table.names
    bi = names.index(baseline)
    others = [i for i in range(len(names)) if i != bi]
    vs_base = compare_pairs(table, [(i, bi) for i in others], dirs, conf, alpha, correction, boot)
    by_base = dict(zip(others, vs_base, strict=True))
    by_prev: dict[int, dict[str, Comparison]] = {}
    if view.design == "add_one_in" and len(names) > 1:
        prev_pairs = [(i, i - 1) for i in range(1, len(names))]
        prev = compare_pairs(table, prev_pairs, dirs, conf, alpha, correction, boot)
        by_prev = {i: c for (i, _), c in zip(prev_pairs, prev, strict=True)}
    notes = _global_notes(conf, correction, boot, view.design, guessed)
    notes.extend(table.notes)
    effects: list[FactorEffect] = []
    if view.design == "factorial":
        effects, fnotes = factorial_effects(view, table, baseline, conf)
        notes.extend(fnotes)
    variants = [
        VariantResult(
            name=v.name,
            factor_levels=v.factor_levels,
            is_baseline=i == bi,
            n_done=int(table.n_done[i]),
            n_unfinished=int(table.n_unfinished[i]),
            cells=cells[i],
            vs_baseline=by_base.get(i, {}),
            vs_previous=by_prev.get(i, {}),
            trials=table.links[i],
        )
        for i, v in enumerate(view.variants)
    ]
    downstream = downstream_section(view, variants, alpha)
    if downstream is not None:
        notes.append(family_note(downstream, alpha))
    return Analysis(
        downstream=downstream,
        cost=arm_costs(view, baseline),
        experiment=view.name,
        design=view.design,
        baseline=baseline,
        primary_metric=view.primary_metric,
        metrics=metrics,
        directions=dirs,
        alpha=alpha,
        confidence=conf,
        correction=correction,
        ci_method=ci_method,
        bootstrap_method=boot.method if boot else None,
        n_boot=boot.n_resamples if boot else None,
        variants=variants,
        best=_best(cells, names, metrics, dirs),
        factor_effects=effects,
        curves=learning_curves(view, view.primary_metric),
        notes=notes,
    )

