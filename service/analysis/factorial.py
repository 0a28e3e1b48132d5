"""Factor effects of a factorial design: OLS on the per-seed values and a type-2 ANOVA.
statsmodels and pandas are imported only when a factorial design is analysed."""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING

import numpy as np

from service.analysis.schema import ExperimentView, FactorEffect, Interval
from service.analysis.summaries import Table, json_float

if TYPE_CHECKING:  # both are imported only when a factorial design is analysed
    import pandas as pd
    from statsmodels.regression.linear_model import RegressionResultsWrapper


def _factor_order(view: ExperimentView) -> list[str]:
    """Factors in order of first appearance in the spec."""
    seen: dict[str, None] = {}
    for v in view.variants:
        for f in v.factor_levels:
            seen.setdefault(f, None)
    return list(seen)


def _factor_levels(view: ExperimentView, factors: list[str], baseline: str) -> dict[str, list[str]]:
    """Levels per factor, the baseline's level first (it is the reference level)."""
    base = next(v for v in view.variants if v.name == baseline)  # analyze checked it is there
    levels: dict[str, list[str]] = {}
    for f in factors:
        seen = list(
            dict.fromkeys(v.factor_levels[f] for v in view.variants if f in v.factor_levels)
        )
        ref = base.factor_levels.get(f)
        if ref in seen:
            seen.remove(ref)
            seen.insert(0, ref)
        levels[f] = seen
    return levels


def _term_formulas(cols: list[str], kinds: dict[str, bool], order: int) -> str:
    """Right-hand side with all interactions up to ``order``; 2-level factors are numeric."""
    parts = [c if kinds[c] else f"C({c}, Sum)" for c in cols]
    rhs = " + ".join(parts)
    return f"({rhs})**{order}" if order > 1 else rhs


def _fit_factorial(
    df: pd.DataFrame, cols: list[str], kinds: dict[str, bool]
) -> tuple[RegressionResultsWrapper | None, int]:
    """Highest-order estimable OLS model (full -> 2-way -> main effects) or None."""
    import statsmodels.formula.api as smf

    for order in range(min(len(cols), 3), 0, -1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rank deficiency is checked just below
            model = smf.ols(f"y ~ {_term_formulas(cols, kinds, order)}", data=df).fit()
        exog = model.model.exog
        if model.df_resid > 0 and np.linalg.matrix_rank(exog) == exog.shape[1]:
            return model, order
    return None, 0


def factorial_effects(
    view: ExperimentView, table: Table, baseline: str, conf: float
) -> tuple[list[FactorEffect], list[str]]:
    """Main effects and interactions per metric via OLS + type-2 ANOVA on per-seed data.

    Two-level factors are coded -1/2 (reference = the baseline's level) and +1/2, so a
    main-effect coefficient is the difference of unweighted level means and an
    interaction coefficient is a difference of differences; their CIs are OLS t CIs.
    F, p and partial eta^2 come from ``anova_lm(typ=2)``.
    """
    from statsmodels.stats.anova import anova_lm

    notes: list[str] = []
    factors = _factor_order(view)
    if not factors:
        return [], ["factorial design without factor_levels: no factor effects."]
    levels = _factor_levels(view, factors, baseline)
    usable = [f for f in factors if len(levels[f]) >= 2]
    for f in factors:
        if f not in usable:
            notes.append(f"factor {f} has a single level: not estimable, skipped.")
    if not usable:
        return [], notes
    cols = [f"f{i}" for i in range(len(usable))]
    name_of = dict(zip(cols, usable, strict=True))
    two_level = {c: len(levels[name_of[c]]) == 2 for c in cols}
    effects: list[FactorEffect] = []
    for mi, metric in enumerate(table.metrics):
        df = _factorial_frame(view, table, mi, usable, cols, levels, two_level)
        model, order = _fit_factorial(df, cols, two_level) if len(df) else (None, 0)
        if model is None:
            notes.append(
                f"{metric}: factorial model not estimable (missing cells or no "
                "replicates); factor effects skipped."
            )
            continue
        if order < min(len(cols), 3):
            notes.append(f"{metric}: only interactions up to order {order} estimable.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table2 = anova_lm(model, typ=2)
        effects.extend(_effects_from_model(metric, model, table2, name_of, levels, two_level, conf))
    return effects, notes


def _factorial_frame(
    view: ExperimentView,
    table: Table,
    mi: int,
    usable: list[str],
    cols: list[str],
    levels: dict[str, list[str]],
    two_level: dict[str, bool],
) -> pd.DataFrame:
    """Long per-seed frame: y plus one column per factor (numeric +-1/2 or level label)."""
    import pandas as pd

    vidx = {n: i for i, n in enumerate(table.names)}
    rows: dict[str, list[float | str]] = {"y": [], **{c: [] for c in cols}}
    for v in view.variants:
        if not all(f in v.factor_levels for f in usable):
            continue
        ys = table.values[vidx[v.name], :, mi]
        ys = ys[~np.isnan(ys)]
        rows["y"].extend(ys.tolist())
        for c, f in zip(cols, usable, strict=True):
            lvl = v.factor_levels[f]
            code = (0.5 if lvl != levels[f][0] else -0.5) if two_level[c] else lvl
            rows[c].extend([code] * len(ys))
    return pd.DataFrame(rows)


def _effects_from_model(
    metric: str,
    model: RegressionResultsWrapper,
    anova: pd.DataFrame,
    name_of: dict[str, str],
    levels: dict[str, list[str]],
    two_level: dict[str, bool],
    conf: float,
) -> list[FactorEffect]:
    """FactorEffect rows from a fitted model and its ANOVA table (plain dicts: fast)."""
    table = anova.to_dict("index")
    resid = table.pop("Residual")
    ss_res, df_res = float(resid["sum_sq"]), float(resid["df"])
    params = model.params.to_dict()
    bounds = model.conf_int(alpha=1 - conf).to_dict("index")
    # Seeds that agree to the last bit leave no residual variance: F would be a division by
    # (numerically) zero, so no test is possible rather than an absurd certainty.
    degenerate = not float(model.ssr) > 1e-12 * float(model.centered_tss)
    out: list[FactorEffect] = []
    for term, row in table.items():
        cols = re.findall(r"f\d+", term)
        names = [name_of[c] for c in cols]
        ss = float(row["sum_sq"])
        eff = FactorEffect(
            metric=metric,
            term=" x ".join(names),
            factors=names,
            kind="main" if len(cols) == 1 else "interaction",
            F=json_float(row["F"]),
            df_num=json_float(row["df"]),
            df_den=df_res,
            p=json_float(row["PR(>F)"]),
            partial_eta_sq=json_float(ss / (ss + ss_res)) if ss + ss_res > 0 else None,
        )
        if all(two_level[c] for c in cols) and term in params:
            lo, hi = bounds[term].values()
            eff.estimate = json_float(params[term])
            eff.ci = Interval(low=float(lo), high=float(hi), level=conf, method="ols_t")
            eff.contrast = _contrast_text(names, levels)
        else:
            eff.note = "multi-level factor: see the F test; no single contrast reported"
        if degenerate:
            eff.F = eff.p = eff.partial_eta_sq = None
            eff.ci = None
            eff.note = "no residual variance (seeds gave identical values): no test possible"
        out.append(eff)
    return out


def _contrast_text(names: list[str], levels: dict[str, list[str]]) -> str:
    """Human reading of a +-1/2 coded coefficient."""
    diffs = [f"{n}: {levels[n][1]} - {levels[n][0]}" for n in names]
    if len(diffs) == 1:
        return diffs[0]
    return "difference of differences (" + "; ".join(diffs) + ")"

