"""Planted-data tests for service.analysis, checked against scipy/statsmodels."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from service.analysis import (
    Analysis,
    AnalysisError,
    ExperimentView,
    TrialRecord,
    VariantView,
    analyze,
    holm,
    metric_direction,
)

SEEDS = range(5)


def make_view(
    data: dict[str, dict[str, list[float]]],
    *,
    design: str = "explicit",
    baseline: str | None = None,
    primary: str = "mean_recall",
    seeds: dict[str, list[int]] | None = None,
    factor_levels: dict[str, dict[str, str]] | None = None,
    extra: list[TrialRecord] | None = None,
) -> ExperimentView:
    """View from {variant: {metric: per-seed values}}; seeds default to 0..n-1."""
    trials = list(extra or [])
    metrics: list[str] = []
    for name, per_metric in data.items():
        for metric in per_metric:
            if metric not in metrics:
                metrics.append(metric)
        n = len(next(iter(per_metric.values())))
        for k, seed in enumerate((seeds or {}).get(name, range(n))):
            trials.append(
                TrialRecord(
                    variant=name,
                    seed=seed,
                    status="finished",
                    metrics={m: vals[k] for m, vals in per_metric.items()},
                )
            )
    names = list(data)
    return ExperimentView(
        name="planted",
        design=design,
        variants=[
            VariantView(name=n, factor_levels=(factor_levels or {}).get(n, {})) for n in names
        ],
        baseline=baseline or names[0],
        primary_metric=primary,
        metrics=metrics,
        trials=trials,
    )


def planted(rng: np.random.Generator, means: dict[str, float], sd: float = 0.5, n: int = 5):
    """Per-variant values sharing a per-seed offset (as real seeds do)."""
    seed_effect = rng.normal(0, 1.0, size=n)
    return {
        name: {"mean_recall": (mu + seed_effect + rng.normal(0, sd, size=n)).tolist()}
        for name, mu in means.items()
    }


# ------------------------------------------------------------------- summaries


def test_cell_summary_matches_scipy_t_interval() -> None:
    vals = [71.2, 72.9, 70.4, 73.3, 72.0]
    a = analyze(make_view({"base": {"mean_recall": vals}}))
    cell = a.variant("base").cells["mean_recall"]
    mean, sd = np.mean(vals), np.std(vals, ddof=1)
    lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=mean, scale=sd / math.sqrt(len(vals)))
    assert cell.n == 5
    assert cell.mean == pytest.approx(mean)
    assert cell.std == pytest.approx(sd)
    assert (cell.ci.low, cell.ci.high) == pytest.approx((lo, hi))
    assert cell.values == vals and cell.seeds == [0, 1, 2, 3, 4]


def test_single_seed_gives_no_interval() -> None:
    view = make_view({"base": {"mean_recall": [70.0, 71.0, 72.0]}, "new": {"mean_recall": [75.0]}})
    a = analyze(view)
    cell = a.variant("new").cells["mean_recall"]
    assert cell.n == 1 and cell.mean == 75.0
    assert cell.ci is None and cell.std is None
    assert "no interval possible" in cell.note
    cmp = a.variant("new").vs_baseline["mean_recall"]
    assert cmp.delta == pytest.approx(75.0 - 71.0)
    assert cmp.ci is None and cmp.p is None and cmp.test is None
    assert cmp.verdict == "insufficient data"


def test_unfinished_seeds_are_counted_not_used() -> None:
    extra = [
        TrialRecord(variant="new", seed=3, status="running"),
        TrialRecord(variant="new", seed=4, status="pending"),
        TrialRecord(variant="new", seed=5, status="failed"),
        # failed first attempt of seed 0 that then finished: counts as done only
        TrialRecord(variant="new", seed=0, status="failed"),
        TrialRecord(variant="base", seed=5, status="cached", metrics={"mean_recall": 71.0}),
    ]
    view = make_view(
        {
            "base": {"mean_recall": [70.0, 71.0, 72.0, 70.5, 71.5]},
            "new": {"mean_recall": [74, 75, 76]},
        },
        extra=extra,
    )
    a = analyze(view)
    new, base = a.variant("new"), a.variant("base")
    assert (new.n_done, new.n_unfinished) == (3, 3)
    assert new.cells["mean_recall"].n == 3 and new.cells["mean_recall"].n_unfinished == 3
    assert (base.n_done, base.n_unfinished) == (6, 0)  # "cached" counts as done
    assert len(new.trials) == 7  # every attempt is linked


# ----------------------------------------------------------------- comparisons


def test_paired_effect_found_and_matches_ttest_rel() -> None:
    rng = np.random.default_rng(7)
    data = planted(rng, {"MLM+ITM": 60.0, "+ITC": 63.0})
    a = analyze(make_view(data))
    cmp = a.variant("+ITC").vs_baseline["mean_recall"]
    x, y = np.array(data["+ITC"]["mean_recall"]), np.array(data["MLM+ITM"]["mean_recall"])
    ref = stats.ttest_rel(x, y)
    ci = ref.confidence_interval(0.95)
    assert cmp.test == "paired_t"
    assert cmp.delta == pytest.approx(np.mean(x - y))
    assert cmp.p == pytest.approx(ref.pvalue) and cmp.statistic == pytest.approx(ref.statistic)
    assert (cmp.ci.low, cmp.ci.high) == pytest.approx((ci.low, ci.high))
    assert cmp.ci.low < 3.0 < cmp.ci.high  # the planted effect is covered
    d = x - y
    assert cmp.effect_size.kind == "cohen_dz"
    assert cmp.effect_size.value == pytest.approx(d.mean() / d.std(ddof=1))
    assert cmp.verdict == "better"
    assert a.best["mean_recall"] == ["+ITC"]


def test_welch_when_seed_sets_differ() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(65, 1, 4), rng.normal(62, 2, 6)
    view = make_view(
        {"base": {"mean_recall": y.tolist()}, "new": {"mean_recall": x.tolist()}},
        seeds={"base": list(range(6)), "new": [0, 1, 2, 7]},
    )
    cmp = analyze(view).variant("new").vs_baseline["mean_recall"]
    ref = stats.ttest_ind(x, y, equal_var=False)
    v1, v2 = x.var(ddof=1) / 4, y.var(ddof=1) / 6
    welch_df = (v1 + v2) ** 2 / (v1**2 / 3 + v2**2 / 5)
    lo, hi = stats.t.interval(0.95, welch_df, loc=x.mean() - y.mean(), scale=math.sqrt(v1 + v2))
    assert cmp.test == "welch_t"
    assert cmp.df == pytest.approx(welch_df)
    assert cmp.p == pytest.approx(ref.pvalue)
    assert (cmp.ci.low, cmp.ci.high) == pytest.approx((lo, hi))
    assert cmp.effect_size.kind == "hedges_g"
    sp = math.sqrt((3 * x.var(ddof=1) + 5 * y.var(ddof=1)) / 8)
    assert abs(cmp.effect_size.value) < abs((x.mean() - y.mean()) / sp)  # small-sample shrink


def _diffs_with_t(t: float, n: int = 5) -> np.ndarray:
    """Paired differences whose one-sample t statistic is exactly ``t``."""
    spread = np.linspace(-1, 1, n)
    spread = spread / spread.std(ddof=1)
    return t / math.sqrt(n) + spread


def test_holm_turns_a_raw_significant_result_non_significant() -> None:
    base = np.array([60.0, 61.0, 59.5, 60.5, 62.0])
    data = {
        "base": {"mean_recall": base.tolist()},
        "strong": {"mean_recall": (base + _diffs_with_t(12)).tolist()},
        "weak": {"mean_recall": (base + _diffs_with_t(3.2)).tolist()},
        "null": {"mean_recall": (base + _diffs_with_t(0.3)).tolist()},
    }
    a = analyze(make_view(data))
    cmps = [a.variant(n).vs_baseline["mean_recall"] for n in ("strong", "weak", "null")]
    raw = [c.p for c in cmps]
    expected = multipletests(raw, alpha=0.05, method="holm")[1]
    assert [c.p_corrected for c in cmps] == pytest.approx(expected)
    weak = cmps[1]
    assert weak.p < 0.05 < weak.p_corrected
    assert weak.verdict == "no detectable difference"
    assert cmps[0].verdict == "better"
    none = analyze(make_view(data), correction="none").variant("weak").vs_baseline["mean_recall"]
    assert none.verdict == "better"


@pytest.mark.parametrize("method", ["bonferroni", "fdr_bh", "holm-sidak", "hommel"])
def test_other_corrections_match_statsmodels(method: str) -> None:
    base = np.array([60.0, 61.0, 59.5, 60.5, 62.0])
    data = {"base": {"mean_recall": base.tolist()}}
    for k, t in enumerate([8.0, 3.5, 2.9, 0.4]):
        data[f"v{k}"] = {"mean_recall": (base + _diffs_with_t(t)).tolist()}
    a = analyze(make_view(data), correction=method)
    cmps = [v.vs_baseline["mean_recall"] for v in a.variants[1:]]
    expected = multipletests([c.p for c in cmps], alpha=0.05, method=method)[1]
    assert [c.p_corrected for c in cmps] == pytest.approx(expected)


def test_numpy_holm_equals_statsmodels() -> None:
    p = np.random.default_rng(0).uniform(0, 0.2, size=37)
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])


REFUSALS = {
    "unknown correction": (
        {"correction": "magic"},
        "correction",
        "'magic' is not a statsmodels multipletests method "
        "(e.g. 'holm', 'bonferroni', 'fdr_bh') or 'none'",
    ),
    "unknown baseline": ({"baseline": "nope"}, "baseline", "'nope' is not a variant of 'planted'"),
    "unknown ci_method": (
        {"ci_method": "jackknife"},
        "ci_method",
        "must be 't' or 'bootstrap', got 'jackknife'",
    ),
    "unknown metric direction": (
        {"directions": {"mean_recall": "up"}},
        "directions",
        "'mean_recall' must be 'higher' or 'lower', got 'up'",
    ),
    "alpha of 1": ({"alpha": 1.0}, "alpha", "must be in (0, 1), got 1.0"),
    "too few resamples": (
        {"ci_method": "bootstrap", "n_boot": 10},
        "n_boot",
        "must be >= 100, got 10",
    ),
    "unknown bootstrap method": (
        {"ci_method": "bootstrap", "bootstrap_method": "studentized"},
        "bootstrap_method",
        "must be one of ('percentile', 'BCa', 'basic')",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_argument_is_an_analysis_error_naming_it(case: str) -> None:
    kwargs, field, reason = REFUSALS[case]
    view = make_view({"a": {"mean_recall": [1.0, 2.0]}, "b": {"mean_recall": [1.0, 2.0]}})
    with pytest.raises(AnalysisError) as caught:
        analyze(view, **kwargs)
    assert (caught.value.field, caught.value.reason) == (field, reason)
    assert str(caught.value) == f"{field}: {reason}"
    assert isinstance(caught.value, ValueError)  # callers catching ValueError still do


def test_a_refused_view_is_an_analysis_error_naming_it() -> None:
    view = make_view({"a": {"mean_recall": [1.0, 2.0]}})
    twice = view.model_copy(update={"variants": view.variants * 2})
    with pytest.raises(AnalysisError) as caught:
        analyze(twice)
    assert (caught.value.field, caught.value.reason) == ("view.variants", "duplicate names")
    with pytest.raises(AnalysisError) as caught:
        analyze(view.model_copy(update={"variants": []}))
    assert (caught.value.field, caught.value.reason) == (
        "view.variants",
        "empty: nothing to analyze",
    )


def _aa_rate(rng: np.random.Generator, repeats: int, seeds_b: list[int]) -> float:
    """Share of A/A experiments (identical variants) that claim a difference."""
    claims = 0
    for _ in range(repeats):
        x = rng.normal(50, 1, size=5)
        y = rng.normal(50, 1, size=len(seeds_b))
        view = make_view(
            {"A": {"mean_recall": x.tolist()}, "B": {"mean_recall": y.tolist()}},
            seeds={"A": list(range(5)), "B": seeds_b},
        )
        verdict = analyze(view).variants[1].vs_baseline["mean_recall"].verdict
        claims += verdict != "no detectable difference"
    return claims / repeats


def test_aa_calibration_paired() -> None:
    rate = _aa_rate(np.random.default_rng(2024), 2000, [0, 1, 2, 3, 4])
    assert 0.03 <= rate <= 0.07


def test_aa_calibration_welch() -> None:
    rate = _aa_rate(np.random.default_rng(99), 1000, [10, 11, 12, 13, 14])
    assert 0.03 <= rate <= 0.07


# ------------------------------------------------------------------ directions


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mean_recall", "higher"),
        ("t2i_r1", "higher"),
        ("i2t_R@5", "higher"),
        ("vqa_accuracy", "higher"),
        ("val_loss", "lower"),
        ("itc_loss", "lower"),
        ("error_rate", "lower"),
        ("perplexity", "lower"),
    ],
)
def test_metric_direction(name: str, expected: str) -> None:
    assert metric_direction(name) == expected


def test_lower_is_better_loss() -> None:
    data = {
        "base": {"mean_recall": [60, 61, 62, 61, 60], "val_loss": [2.0, 2.1, 2.05, 1.98, 2.02]},
        "new": {"mean_recall": [60, 61, 62, 61, 61], "val_loss": [1.6, 1.72, 1.65, 1.58, 1.61]},
    }
    a = analyze(make_view(data))
    assert a.directions["val_loss"] == "lower"
    cmp = a.variant("new").vs_baseline["val_loss"]
    assert cmp.delta < 0 and cmp.verdict == "better"
    assert a.best["val_loss"] == ["new"]
    flipped = analyze(make_view(data), directions={"val_loss": "higher"})
    assert flipped.variant("new").vs_baseline["val_loss"].verdict == "worse"
    assert flipped.best["val_loss"] == ["base"]


# ------------------------------------------------------------------- designs


def _factorial_view(rng: np.random.Generator, drop: str | None = None) -> ExperimentView:
    """2x2 ITC x HN: ITC +3, HN 0, ITC:HN +2 (so HN only helps with ITC)."""
    data, levels = {}, {}
    for itc in ("off", "on"):
        for hn in ("off", "on"):
            name = f"ITC={itc},HN={hn}"
            if name == drop:
                continue
            mu = 50 + 3 * (itc == "on") + 2 * (itc == "on" and hn == "on")
            data[name] = {"mean_recall": (mu + rng.normal(0, 0.4, 6)).tolist()}
            levels[name] = {"ITC": itc, "HN": hn}
    return make_view(data, design="factorial", factor_levels=levels)


def test_factorial_main_effect_and_interaction() -> None:
    view = _factorial_view(np.random.default_rng(11))
    a = analyze(view)
    eff = {e.term: e for e in a.factor_effects if e.metric == "mean_recall"}
    assert set(eff) == {"ITC", "HN", "ITC x HN"}
    cell = {v.name: np.mean(v.cells["mean_recall"].values) for v in a.variants}
    m00, m01 = cell["ITC=off,HN=off"], cell["ITC=off,HN=on"]
    m10, m11 = cell["ITC=on,HN=off"], cell["ITC=on,HN=on"]
    assert eff["ITC"].estimate == pytest.approx((m10 + m11) / 2 - (m00 + m01) / 2)
    assert eff["ITC x HN"].estimate == pytest.approx((m11 - m10) - (m01 - m00))
    assert eff["ITC"].ci.low < 4.0 < eff["ITC"].ci.high  # 3 + half the interaction
    assert eff["ITC x HN"].ci.low < 2.0 < eff["ITC x HN"].ci.high
    assert eff["ITC"].p < 1e-6 and eff["ITC x HN"].p < 0.001
    assert eff["ITC"].contrast == "ITC: on - off"
    assert 0 < eff["ITC"].partial_eta_sq < 1
    assert eff["ITC x HN"].kind == "interaction" and eff["ITC"].df_den == 20


def test_factorial_missing_cell_degrades_gracefully() -> None:
    a = analyze(_factorial_view(np.random.default_rng(5), drop="ITC=on,HN=on"))
    terms = {e.term for e in a.factor_effects}
    assert terms == {"ITC", "HN"}  # interaction not estimable without the cell
    assert any("interactions up to order 1" in n for n in a.notes)


def test_factorial_with_identical_seeds_reports_no_test() -> None:
    """The demo's case: every seed of each cell agrees exactly, so F is undefined."""
    levels = {"ITC=off": {"ITC": "off"}, "ITC=on": {"ITC": "on"}}
    view = make_view(
        {"ITC=off": {"mean_recall": [5.0, 5.0]}, "ITC=on": {"mean_recall": [4.0, 4.0]}},
        design="factorial",
        factor_levels=levels,
    )
    (eff,) = [e for e in analyze(view).factor_effects if e.metric == "mean_recall"]
    assert eff.F is None and eff.p is None
    assert "no residual variance" in eff.note


def test_factorial_without_replicates_is_skipped_with_note() -> None:
    levels = {f"v{i}": {"A": a, "B": b} for i, (a, b) in enumerate([("0", "0"), ("1", "0")])}
    view = make_view(
        {"v0": {"mean_recall": [1.0]}, "v1": {"mean_recall": [2.0]}},
        design="factorial",
        factor_levels=levels,
    )
    a = analyze(view)
    assert a.factor_effects == []
    assert any("single level" in n for n in a.notes)
    assert any("not estimable" in n for n in a.notes)


def test_add_one_in_compares_with_previous_and_baseline() -> None:
    rng = np.random.default_rng(1)
    data = planted(rng, {"MLM": 50.0, "+ITM": 55.0, "+ITC": 56.0}, sd=0.3)
    a = analyze(make_view(data, design="add_one_in"))
    mean = {n: np.mean(d["mean_recall"]) for n, d in data.items()}
    third = a.variant("+ITC")
    assert a.variant("MLM").vs_previous == {}
    assert third.vs_previous["mean_recall"].reference == "+ITM"
    assert third.vs_previous["mean_recall"].delta == pytest.approx(mean["+ITC"] - mean["+ITM"])
    assert third.vs_baseline["mean_recall"].delta == pytest.approx(mean["+ITC"] - mean["MLM"])
    second = a.variant("+ITM").vs_previous["mean_recall"]
    assert second.delta == pytest.approx(mean["+ITM"] - mean["MLM"])
    assert second.verdict == "better"
    assert a.variant("+ITM").vs_baseline["mean_recall"].delta == pytest.approx(second.delta)


def test_bootstrap_is_deterministic_and_labelled() -> None:
    rng = np.random.default_rng(4)
    view = make_view(planted(rng, {"base": 60.0, "new": 62.0}))
    one = analyze(view, ci_method="bootstrap", n_boot=500)
    two = analyze(view, ci_method="bootstrap", n_boot=500)
    assert one.model_dump() == two.model_dump()
    cmp = one.variant("new").vs_baseline["mean_recall"]
    assert cmp.ci.method == "bootstrap-percentile"
    assert cmp.ci.low < cmp.delta < cmp.ci.high
    t_cmp = analyze(view).variant("new").vs_baseline["mean_recall"]
    assert cmp.ci.low != t_cmp.ci.low and cmp.p == pytest.approx(t_cmp.p)
    bca = analyze(view, ci_method="bootstrap", bootstrap_method="BCa", n_boot=500)
    assert bca.variant("new").cells["mean_recall"].ci.method == "bootstrap-BCa"


def test_curves_summarise_history_per_step() -> None:
    trials = [
        TrialRecord(
            variant="a",
            seed=s,
            status="finished" if s < 2 else "running",
            metrics={"mean_recall": 50.0 + s},
            history={"mean_recall": [(100, 10.0 + s), (200, 20.0 + s)][: 2 if s < 2 else 1]},
        )
        for s in range(3)
    ]
    view = ExperimentView(
        name="c",
        design="explicit",
        variants=[VariantView(name="a")],
        baseline="a",
        primary_metric="mean_recall",
        metrics=["mean_recall"],
        trials=trials,
    )
    (curve,) = analyze(view).curves
    assert curve.steps == [100, 200] and curve.n == [3, 2]
    assert curve.mean == pytest.approx([11.0, 20.5])
    assert curve.std[0] == pytest.approx(1.0)


def test_analysis_is_json_serialisable_and_round_trips() -> None:
    a = analyze(_factorial_view(np.random.default_rng(0)))
    dumped = a.model_dump(mode="json")
    text = json.dumps(dumped, allow_nan=False)
    again = Analysis.model_validate(json.loads(text))
    assert again == a


def test_factorial_multilevel_factor_reports_f_test_only() -> None:
    rng = np.random.default_rng(0)
    data, levels = {}, {}
    for a_level in "xyz":
        for b_level in ("off", "on"):
            name = f"A={a_level},B={b_level}"
            mu = 50 + 2 * (a_level == "z") + 1 * (b_level == "on")
            data[name] = {"acc": (mu + rng.normal(0, 0.3, 3)).tolist()}
            levels[name] = {"A": a_level, "B": b_level}
    a = analyze(make_view(data, design="factorial", factor_levels=levels, primary="acc"))
    eff = {e.term: e for e in a.factor_effects}
    assert eff["A"].df_num == 2 and eff["A"].estimate is None and eff["A"].p < 0.001
    assert "multi-level" in eff["A"].note
    assert eff["B"].ci.low < 1.0 < eff["B"].ci.high


def test_leave_one_out_removal_hurts() -> None:
    rng = np.random.default_rng(8)
    data = planted(rng, {"full": 70.0, "w/o ITC": 66.0, "w/o MLM": 69.9}, sd=0.3)
    a = analyze(make_view(data, design="leave_one_out"))
    assert a.variant("w/o ITC").vs_baseline["mean_recall"].verdict == "worse"
    assert a.variant("full").is_baseline and a.variant("full").vs_baseline == {}


def test_missing_metric_in_a_finished_trial_is_counted() -> None:
    extra = [TrialRecord(variant="b", seed=9, status="finished", metrics={"mean_recall": 71.0})]
    view = make_view(
        {"a": {"mean_recall": [70.0, 71.0], "t2i_r1": [50.0, 51.0]}, "b": {"mean_recall": [72.0]}},
        extra=extra,
    )
    view.metrics = ["mean_recall", "t2i_r1"]
    cell = analyze(view).variant("b").cells["t2i_r1"]
    assert cell.n == 0 and cell.n_missing == 2 and cell.mean is None


def test_arms_that_differ_at_no_seed_show_no_difference_not_missing_data() -> None:
    """A downstream case (minimal pairs' group score 0, 1/56, 0 in both arms): every paired
    difference is 0, t is 0/0, yet three seeds each are a full sample with no evidence of a
    difference; a sign test gives p = 1, and so does the analysis."""
    same = [0.0, 1 / 56, 0.0]
    view = make_view({"base": {"group": same}, "new": {"group": list(same)}}, primary="group")
    cmp = analyze(view).variant("new").vs_baseline["group"]
    assert cmp.test == "paired_t" and cmp.p == 1.0 and cmp.verdict == "no detectable difference"
    assert (cmp.ci.low, cmp.ci.high) == (0.0, 0.0) and cmp.effect_size is None
    assert "differ at no seed" in cmp.note

    # unpaired seed sets, both arms one and the same constant: Welch is 0/0 too
    view = make_view({"base": {"group": [0.5, 0.5, 0.5]}, "new": {"group": [0.5, 0.5]}},
                     primary="group", seeds={"base": [0, 1, 2], "new": [3, 4]})
    cmp = analyze(view).variant("new").vs_baseline["group"]
    assert cmp.test == "welch_t" and cmp.p == 1.0 and cmp.verdict == "no detectable difference"


def test_a_difference_with_no_spread_is_judged_by_an_exact_test_not_an_infinite_t() -> None:
    """loss_weights' case: two seeds, both +1/56 on the minimal pairs. t is infinite and its
    p of 0 called that decided. By the sign test, k same-sign differences of k have
    two-sided p = 2 * 0.5**k; by the exact Mann-Whitney test, two constant arms of sizes 3
    and 2 that do not overlap have p = 2 / C(5, 2)."""
    view = make_view({"base": {"group": [0.0, 0.0]}, "new": {"group": [1 / 56, 1 / 56]}},
                     primary="group")
    cmp = analyze(view).variant("new").vs_baseline["group"]
    assert cmp.p == pytest.approx(2 * 0.5**2) and cmp.verdict == "no detectable difference"
    assert cmp.ci is None and "sign test" in cmp.note

    view = make_view({"base": {"group": [0.0] * 5}, "new": {"group": [1.0] * 5}},
                     primary="group")
    assert analyze(view).variant("new").vs_baseline["group"].p == pytest.approx(2 * 0.5**5)

    view = make_view({"base": {"group": [0.0, 0.0]}, "new": {"group": [1.0, 1.0, 1.0]}},
                     primary="group", seeds={"base": [0, 1], "new": [2, 3, 4]})
    cmp = analyze(view).variant("new").vs_baseline["group"]
    assert cmp.test == "welch_t" and cmp.p == pytest.approx(2 / math.comb(5, 2))
    assert "Mann-Whitney" in cmp.note
