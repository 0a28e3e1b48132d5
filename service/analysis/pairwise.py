"""Variant-vs-reference comparisons: paired or Welch t-tests batched over every (pair, metric)
row, effect sizes, multiplicity correction within a metric's family, and verdicts."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from service.analysis.pairing import Pairing, check_pairing
from service.analysis.schema import Comparison, Direction, EffectSize, Interval
from service.analysis.summaries import Boot, Table, json_float, nan_mean_std


@dataclass
class _PairStats:
    """Flat arrays over (pair, metric) rows, row = pair_index * n_metrics + metric_index."""

    n_a: np.ndarray
    n_b: np.ndarray
    delta: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    df: np.ndarray
    stat: np.ndarray
    p: np.ndarray
    eff: np.ndarray
    eff_lo: np.ndarray
    eff_hi: np.ndarray
    test: np.ndarray  # 0 none, 1 paired, 2 welch
    p_corr: np.ndarray | None = None

    @classmethod
    def empty(cls, n_a: np.ndarray, n_b: np.ndarray, delta: np.ndarray) -> _PairStats:
        """Rows with counts and deltas only: no test has run on any of them yet."""
        r = len(n_a)
        lo, hi, df, stat, p, eff, eff_lo, eff_hi = (np.full(r, np.nan) for _ in range(8))
        return cls(
            n_a, n_b, delta, lo, hi, df, stat, p, eff, eff_lo, eff_hi, test=np.zeros(r, dtype=int)
        )


def _pair_stats(
    values: np.ndarray, pairs: Sequence[tuple[int, int]], conf: float, boot: Boot | None,
    unpaired: np.ndarray | None = None,
) -> _PairStats:
    """Vectorised tests for every (variant, reference) pair and metric.

    Rows are grouped by sample size so each group is a single batched
    ``ttest_rel`` / ``ttest_ind`` call instead of one call per cell.
    """
    n_seeds = values.shape[1]
    ia = np.array([a for a, _ in pairs], dtype=int)
    ib = np.array([b for _, b in pairs], dtype=int)
    rows_total = len(pairs) * values.shape[2]
    A = np.moveaxis(values[ia], 1, 2).reshape(rows_total, n_seeds)
    B = np.moveaxis(values[ib], 1, 2).reshape(rows_total, n_seeds)
    ma, mb = ~np.isnan(A), ~np.isnan(B)
    n_a, mean_a, _ = nan_mean_std(A, axis=1)
    n_b, mean_b, _ = nan_mean_std(B, axis=1)
    out = _PairStats.empty(n_a, n_b, mean_a - mean_b)
    z = stats.norm.ppf(0.5 + conf / 2)
    paired = (ma == mb).all(axis=1) & (n_a >= 2)
    if unpaired is not None:  # per pair: their fingerprints say the seeds were not shared
        paired &= ~np.repeat(unpaired, values.shape[2])
    welch = ~paired & (n_a >= 2) & (n_b >= 2)
    for k in np.unique(n_a[paired]):
        rows = np.flatnonzero(paired & (n_a == k))
        a, b = A[rows][ma[rows]].reshape(-1, k), B[rows][mb[rows]].reshape(-1, k)
        _paired_group(out, rows, a, b, conf, z, boot)
    for k1, k2 in {(int(x), int(y)) for x, y in zip(n_a[welch], n_b[welch], strict=True)}:
        rows = np.flatnonzero(welch & (n_a == k1) & (n_b == k2))
        a, b = A[rows][ma[rows]].reshape(-1, k1), B[rows][mb[rows]].reshape(-1, k2)
        _welch_group(out, rows, a, b, conf, z, boot)
    return out


def _paired_group(
    out: _PairStats,
    rows: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    conf: float,
    z: float,
    boot: Boot | None,
) -> None:
    """Paired t-test and Cohen's d_z for rows that share the same seeds."""
    n = a.shape[1]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = stats.ttest_rel(a, b, axis=1)
        ci = res.confidence_interval(conf)
        d = a - b
        dz = d.mean(axis=1) / d.std(axis=1, ddof=1)
        se = np.sqrt(1.0 / n + dz**2 / (2 * n))
        dz_lo, dz_hi = dz - z * se, dz + z * se
    out.test[rows] = 1
    out.stat[rows], out.p[rows], out.df[rows] = res.statistic, res.pvalue, res.df
    out.lo[rows], out.hi[rows] = ci.low, ci.high
    out.eff[rows], out.eff_lo[rows], out.eff_hi[rows] = dz, dz_lo, dz_hi
    flat = (d == d[:, :1]).all(axis=1) & (d[:, 0] != 0)
    for r, k in zip(rows[flat], d[flat], strict=True):
        _no_spread(out, r, float(stats.binomtest(len(k), len(k), 0.5).pvalue))
    _no_difference_at_all(out, rows[(d == 0).all(axis=1)])
    if boot is not None:
        out.lo[rows], out.hi[rows] = boot.interval((d,), conf)


def _welch_group(
    out: _PairStats,
    rows: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    conf: float,
    z: float,
    boot: Boot | None,
) -> None:
    """Welch t-test and Hedges' g for rows whose seed sets differ."""
    n1, n2 = a.shape[1], b.shape[1]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = stats.ttest_ind(a, b, axis=1, equal_var=False)
        ci = res.confidence_interval(conf)
        dfp = n1 + n2 - 2
        sp = np.sqrt(((n1 - 1) * a.var(axis=1, ddof=1) + (n2 - 1) * b.var(axis=1, ddof=1)) / dfp)
        # exact small-sample correction J(df) = G(df/2) / (sqrt(df/2) G((df-1)/2))
        j = math.exp(special.gammaln(dfp / 2) - special.gammaln((dfp - 1) / 2)) / math.sqrt(dfp / 2)
        g = j * (a.mean(axis=1) - b.mean(axis=1)) / sp
        se = np.sqrt((n1 + n2) / (n1 * n2) + g**2 / (2 * (n1 + n2)))
        g_lo, g_hi = g - z * se, g + z * se
    out.test[rows] = 2
    out.stat[rows], out.p[rows], out.df[rows] = res.statistic, res.pvalue, res.df
    out.lo[rows], out.hi[rows] = ci.low, ci.high
    out.eff[rows], out.eff_lo[rows], out.eff_hi[rows] = g, g_lo, g_hi
    flat = (a == a[:, :1]).all(axis=1) & (b == b[:, :1]).all(axis=1) & (a[:, 0] != b[:, 0])
    for r, x, y in zip(rows[flat], a[flat], b[flat], strict=True):
        _no_spread(out, r, float(stats.mannwhitneyu(x, y, method="exact").pvalue))
    _no_difference_at_all(out, rows[(a == a[:, :1]).all(axis=1) & (b == a[:, :1]).all(axis=1)])
    if boot is not None:
        out.lo[rows], out.hi[rows] = boot.interval((a, b), conf)


def _no_spread(out: _PairStats, row: int, p: float) -> None:
    """A row whose difference is the same at every seed: t is infinite and its p of 0 would
    call any such difference decided (two seeds both +1/56 on the minimal pairs did). The
    exact sign test (paired) or Mann-Whitney test (unpaired) needs no spread; no t interval."""
    out.stat[row], out.p[row] = np.nan, p
    out.lo[row] = out.hi[row] = np.nan
    out.eff[row] = out.eff_lo[row] = out.eff_hi[row] = np.nan


def _no_difference_at_all(out: _PairStats, rows: np.ndarray) -> None:
    """Rows whose observations differ nowhere (every paired difference 0, or both arms one
    and the same constant): t is 0/0, but the data hold no evidence of a difference at all,
    so p is 1 (as a sign test's would be) rather than "insufficient data" for a full sample."""
    out.stat[rows], out.p[rows] = 0.0, 1.0
    out.lo[rows], out.hi[rows] = 0.0, 0.0


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p values, identical to statsmodels ``method="holm"``.

    Done in numpy because statsmodels' holm branch calls ``gc.collect()`` on every call,
    which costs tens of milliseconds per metric inside a large service process.
    """
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    adj = np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1))
    out = np.empty_like(adj)
    out[order] = np.minimum(adj, 1.0)
    return out


def correct_pvalues(p: np.ndarray, alpha: float, correction: str) -> np.ndarray:
    """Adjusted p values for one family (``correction`` = statsmodels method or 'none')."""
    from statsmodels.stats.multitest import multipletests

    if correction == "none":
        return np.asarray(p, dtype=float)
    if correction == "holm":
        return holm(p)
    return multipletests(p, alpha=alpha, method=correction)[1]


def _correct(ps: _PairStats, n_metrics: int, alpha: float, correction: str) -> None:
    """Multiplicity correction within each metric's family of comparisons."""
    p_corr = np.full_like(ps.p, np.nan)
    for m in range(n_metrics):
        rows = np.arange(m, len(ps.p), n_metrics)
        rows = rows[np.isfinite(ps.p[rows])]
        if len(rows):
            p_corr[rows] = correct_pvalues(ps.p[rows], alpha, correction)
    ps.p_corr = p_corr


def _verdicts(ps: _PairStats, higher: np.ndarray, alpha: float) -> list[str]:
    """better / worse / no detectable difference / insufficient data per row."""
    assert ps.p_corr is not None
    tested = np.isfinite(ps.p_corr)
    sig = tested & (ps.p_corr < alpha)
    good = np.where(higher, ps.delta > 0, ps.delta < 0)
    verdict = np.where(
        sig & good,
        "better",
        np.where(sig, "worse", np.where(tested, "no detectable difference", "insufficient data")),
    )
    return verdict.tolist()


def compare_pairs(
    table: Table,
    pairs: Sequence[tuple[int, int]],
    directions: dict[str, Direction],
    conf: float,
    alpha: float,
    correction: str,
    boot: Boot | None,
) -> list[dict[str, Comparison]]:
    """Comparison objects per pair (same order as ``pairs``), keyed by metric."""
    if not pairs:
        return []
    n_metrics = len(table.metrics)
    pairings = [check_pairing(table, ia, ib) for ia, ib in pairs]
    ps = _pair_stats(table.values, pairs, conf, boot,
                     np.array([p.broken for p in pairings], dtype=bool))
    _correct(ps, n_metrics, alpha, correction)
    higher = np.tile([directions[m] == "higher" for m in table.metrics], len(pairs))
    verdicts = _verdicts(ps, higher, alpha)
    ci_method = None if boot is None else f"bootstrap-{boot.method}"
    cols = {
        k: getattr(ps, k).tolist()
        for k in (
            "n_a",
            "n_b",
            "delta",
            "lo",
            "hi",
            "df",
            "stat",
            "p",
            "p_corr",
            "eff",
            "eff_lo",
            "eff_hi",
            "test",
        )
    }
    out: list[dict[str, Comparison]] = []
    for k, (ia, ib) in enumerate(pairs):
        row: dict[str, Comparison] = {}
        for m, metric in enumerate(table.metrics):
            r = k * n_metrics + m
            row[metric] = _comparison(
                {c: v[r] for c, v in cols.items()},
                variant=table.names[ia],
                reference=table.names[ib],
                metric=metric,
                direction=directions[metric],
                verdict=verdicts[r],
                conf=conf,
                ci_method=ci_method,
                pairing=pairings[k],
            )
        out.append(row)
    return out


def _comparison(
    r: dict[str, Any],
    *,
    variant: str,
    reference: str,
    metric: str,
    direction: Direction,
    verdict: str,
    conf: float,
    ci_method: str | None,
    pairing: Pairing,
) -> Comparison:
    """One Comparison from a row of the flat arrays."""
    test = {0: None, 1: "paired_t", 2: "welch_t"}[r["test"]]
    ci = eff = None
    if test is not None and math.isfinite(r["lo"]):
        ci = Interval(low=r["lo"], high=r["hi"], level=conf, method=ci_method or test)
    if test is not None and math.isfinite(r["eff"]):
        eff = EffectSize(
            kind="cohen_dz" if test == "paired_t" else "hedges_g",
            value=r["eff"],
            ci=Interval(low=r["eff_lo"], high=r["eff_hi"], level=conf, method="normal-approx"),
        )
    note = None
    if test is None:
        note = "fewer than 2 seeds on a side: no test or interval possible"
    elif not math.isfinite(r["p"]):
        note = "test undefined (zero variance)"
    elif not math.isfinite(r["stat"]):
        note = ("the difference is the same at every seed: exact "
                + ("sign" if test == "paired_t" else "Mann-Whitney") + " test, no t interval")
    elif r["stat"] == 0.0 and r["lo"] == 0.0 == r["hi"]:
        note = "the arms' values differ at no seed: p = 1, no effect size"
    elif test == "welch_t" and pairing.broken:
        note = f"unpaired, {pairing.label.removeprefix('broken: ')}: Welch t-test"
    elif test == "welch_t":
        note = "seed sets differ: Welch t-test"
    return Comparison(
        variant=variant,
        reference=reference,
        metric=metric,
        direction=direction,
        test=test,
        n_variant=r["n_a"],
        n_reference=r["n_b"],
        delta=json_float(r["delta"]),
        ci=ci,
        df=json_float(r["df"]),
        statistic=json_float(r["stat"]),
        p=json_float(r["p"]),
        p_corrected=json_float(r["p_corr"]),
        effect_size=eff,
        verdict=verdict,
        note=note,
        pairing=pairing.label,
    )

