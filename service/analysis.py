"""Seed-aware statistics for ablation experiments.

Pure module: numbers in, numbers out. No web framework, database, tracking server or
plotting here, so it can be unit-tested on planted data and reused by the API, the CLI
and the report renderers (``service.report``).

Conventions (also recorded in ``Analysis.notes`` so a report states them):

* A trial counts as done when its status is ``finished`` or ``cached``; every other status
  is unfinished. A seed that has a done trial is never counted as unfinished, so a failed
  attempt followed by a successful retry counts once, as done.
* ``delta`` is always ``variant - reference`` in the metric's own units; the metric's
  direction only decides whether a significant delta is "better" or "worse".
* Confidence level is ``1 - alpha``. Interval endpoints are per comparison (not adjusted);
  the verdict uses the multiplicity-corrected p value. A correction family is one metric x
  one kind of comparison (all variants vs the baseline, or all rows vs the previous row).
* Paired t-test when both sides have exactly the same seeds (>= 2); otherwise Welch.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy import special, stats

DONE_STATUSES = frozenset({"finished", "cached"})

Direction = Literal["higher", "lower"]
DesignKind = Literal["factorial", "leave_one_out", "add_one_in", "explicit"]
Verdict = Literal["better", "worse", "no detectable difference", "insufficient data"]
TestKind = Literal["paired_t", "welch_t"]

EFFECT_SIZE_CI_METHOD = (
    "normal approximation: se(d_z) = sqrt(1/n + d_z^2/(2n)); "
    "se(g) = sqrt((n1+n2)/(n1*n2) + g^2/(2(n1+n2)))"
)
BOOTSTRAP_METHODS = ("percentile", "BCa", "basic")

# --------------------------------------------------------------------------- input


class TrialRecord(BaseModel):
    """One (variant, seed) run as the service knows it."""

    variant: str
    seed: int
    status: str
    metrics: dict[str, float] = Field(default_factory=dict)
    # metric -> [(step, value)] learning curve; may be empty
    history: dict[str, list[tuple[int, float]]] = Field(default_factory=dict)
    mlflow_url: str | None = None

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES


class VariantView(BaseModel):
    """A variant as the spec lists it; ``factor_levels`` e.g. ``{"ITC": "on"}``."""

    name: str
    factor_levels: dict[str, str] = Field(default_factory=dict)


class ExperimentView(BaseModel):
    """Everything ``analyze`` needs: the spec's shape plus the trials so far."""

    name: str
    design: DesignKind
    variants: list[VariantView]  # spec order; add_one_in relies on it
    baseline: str
    primary_metric: str
    metrics: list[str] = Field(default_factory=list)
    trials: list[TrialRecord] = Field(default_factory=list)


# -------------------------------------------------------------------------- output


class Interval(BaseModel):
    low: float
    high: float
    level: float
    method: str  # "t", "welch_t", "paired_t", "bootstrap-percentile", "normal-approx", ...


class Cell(BaseModel):
    """Summary of one metric for one variant over its done seeds."""

    metric: str
    n: int  # done seeds with a finite value for this metric
    n_unfinished: int  # seeds of this variant that are not done (yet)
    n_missing: int = 0  # done seeds that did not report this metric
    mean: float | None = None
    std: float | None = None  # ddof=1; None when n < 2
    ci: Interval | None = None  # None when n < 2: no interval is possible
    seeds: list[int] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)  # aligned with seeds
    note: str | None = None


class EffectSize(BaseModel):
    kind: Literal["cohen_dz", "hedges_g"]
    value: float
    ci: Interval | None = None


class Comparison(BaseModel):
    """variant - reference for one metric."""

    variant: str
    reference: str
    metric: str
    direction: Direction
    test: TestKind | None = None
    n_variant: int
    n_reference: int
    delta: float | None = None
    ci: Interval | None = None
    df: float | None = None
    statistic: float | None = None
    p: float | None = None
    p_corrected: float | None = None
    effect_size: EffectSize | None = None
    verdict: Verdict = "insufficient data"
    note: str | None = None


class TrialLink(BaseModel):
    seed: int
    status: str
    mlflow_url: str | None = None


class VariantResult(BaseModel):
    name: str
    factor_levels: dict[str, str] = Field(default_factory=dict)
    is_baseline: bool = False
    n_done: int = 0  # distinct done seeds
    n_unfinished: int = 0  # distinct seeds without a done trial
    cells: dict[str, Cell] = Field(default_factory=dict)  # metric -> summary
    vs_baseline: dict[str, Comparison] = Field(default_factory=dict)  # empty for baseline
    vs_previous: dict[str, Comparison] = Field(default_factory=dict)  # add_one_in only
    trials: list[TrialLink] = Field(default_factory=list)


class Curve(BaseModel):
    """Learning curve of one metric for one variant, summarised over seeds per step."""

    variant: str
    metric: str
    steps: list[int]
    mean: list[float]
    std: list[float | None]  # None where fewer than 2 seeds reported that step
    n: list[int]


class FactorEffect(BaseModel):
    """One ANOVA term of a factorial design (main effect or interaction)."""

    metric: str
    term: str  # "ITC" or "ITC x HN"
    factors: list[str]
    kind: Literal["main", "interaction"]
    contrast: str | None = None  # what estimate means, e.g. "ITC: on - off"
    estimate: float | None = None
    ci: Interval | None = None
    F: float | None = None
    df_num: float | None = None
    df_den: float | None = None
    p: float | None = None
    partial_eta_sq: float | None = None
    note: str | None = None


class Analysis(BaseModel):
    """Result of ``analyze``; JSON-serialisable via ``model_dump(mode="json")``."""

    schema_version: int = 1
    experiment: str
    design: DesignKind
    baseline: str
    primary_metric: str
    metrics: list[str]
    directions: dict[str, Direction]
    alpha: float
    confidence: float
    correction: str
    ci_method: Literal["t", "bootstrap"]
    bootstrap_method: str | None = None
    n_boot: int | None = None
    effect_size_ci_method: str = EFFECT_SIZE_CI_METHOD
    variants: list[VariantResult]  # spec order
    best: dict[str, list[str]] = Field(default_factory=dict)  # metric -> best variant(s)
    factor_effects: list[FactorEffect] = Field(default_factory=list)
    curves: list[Curve] = Field(default_factory=list)  # primary metric only
    notes: list[str] = Field(default_factory=list)

    def variant(self, name: str) -> VariantResult:
        """Look a variant up by name (KeyError if absent)."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


# ----------------------------------------------------------------------- direction

_LOWER_SUBSTR = ("loss", "error", "perplexity", "latency")
_LOWER_TOKENS = {"err", "ppl", "nll", "wer", "cer", "mse", "mae", "rmse", "ece", "fid", "time"}
_HIGHER_SUBSTR = ("recall", "acc", "precision", "bleu", "cider", "rouge", "meteor", "spice")
_HIGHER_TOKENS = {"rsum", "f1", "auc", "map", "ndcg", "mrr", "score"}
_RECALL_AT_K = re.compile(r"^r@?\d+$|^r@k$")


def _guess_direction(name: str) -> Direction | None:
    """Direction from the metric's name; None when the name says nothing."""
    low = name.lower()
    tokens = set(re.split(r"[^a-z0-9@]+", low))
    if any(s in low for s in _LOWER_SUBSTR) or tokens & _LOWER_TOKENS:
        return "lower"
    if any(s in low for s in _HIGHER_SUBSTR) or tokens & _HIGHER_TOKENS:
        return "higher"
    if any(_RECALL_AT_K.match(t) for t in tokens):
        return "higher"
    return None


def metric_direction(name: str, overrides: dict[str, str] | None = None) -> Direction:
    """Whether larger values of ``name`` are better.

    ``overrides`` wins; otherwise recall/accuracy/R@k style names are "higher" and
    loss/error/perplexity style names "lower". Unknown names default to "higher"
    (``analyze`` records a note when it had to guess).
    """
    if overrides and name in overrides:
        value = overrides[name]
        if value not in ("higher", "lower"):
            raise ValueError(f"directions[{name!r}] must be 'higher' or 'lower', got {value!r}")
        return value  # type: ignore[return-value]
    return _guess_direction(name) or "higher"


# ------------------------------------------------------------------------ collect


@dataclass
class _Table:
    """Per-seed values as one dense array: values[variant, seed, metric], NaN = missing."""

    names: list[str]
    metrics: list[str]
    seeds: np.ndarray
    values: np.ndarray
    n_done: np.ndarray
    n_unfinished: np.ndarray
    n_missing: np.ndarray
    links: list[list[TrialLink]]
    notes: list[str] = field(default_factory=list)


def _collect(view: ExperimentView, metrics: list[str]) -> _Table:
    """Turn trial records into the dense array; later duplicates of a done seed win."""
    names = [v.name for v in view.variants]
    vidx = {n: i for i, n in enumerate(names)}
    midx = {m: j for j, m in enumerate(metrics)}
    notes: list[str] = []
    unknown = sorted({t.variant for t in view.trials if t.variant not in vidx})
    if unknown:
        notes.append(f"Ignored trials of variants not in the spec: {', '.join(unknown)}.")
    done: dict[tuple[int, int], TrialRecord] = {}
    dupes = 0
    for t in view.trials:
        if t.done and t.variant in vidx:
            key = (vidx[t.variant], t.seed)
            dupes += key in done
            done[key] = t
    if dupes:
        notes.append(
            f"{dupes} duplicate done trial(s) for the same (variant, seed): kept the last."
        )
    seeds = np.array(sorted({s for _, s in done}), dtype=int)
    sidx = {int(s): k for k, s in enumerate(seeds)}
    values = np.full((len(names), len(seeds), len(metrics)), np.nan)
    n_missing = np.zeros((len(names), len(metrics)), dtype=int)
    for (vi, seed), t in done.items():
        row = values[vi, sidx[seed]]
        for name, val in t.metrics.items():
            j = midx.get(name)
            if j is not None and val is not None and math.isfinite(val):
                row[j] = val
    n_done = np.zeros(len(names), dtype=int)
    for vi, _ in done:
        n_done[vi] += 1
    if len(seeds):
        n_missing = n_done[:, None] - (~np.isnan(values)).sum(axis=1)
    unfinished: list[set[int]] = [set() for _ in names]
    links: list[list[TrialLink]] = [[] for _ in names]
    for t in view.trials:
        vi = vidx.get(t.variant)
        if vi is None:
            continue
        links[vi].append(TrialLink(seed=t.seed, status=t.status, mlflow_url=t.mlflow_url))
        if not t.done and (vi, t.seed) not in done:
            unfinished[vi].add(t.seed)
    for lst in links:
        lst.sort(key=lambda link: link.seed)
    return _Table(
        names=names,
        metrics=metrics,
        seeds=seeds,
        values=values,
        n_done=n_done,
        n_unfinished=np.array([len(u) for u in unfinished], dtype=int),
        n_missing=n_missing,
        links=links,
        notes=notes,
    )


# ------------------------------------------------------------------ bootstrap / CI


@dataclass(frozen=True)
class _Boot:
    """Bootstrap settings; a fresh generator per call keeps results order-independent."""

    method: str
    n_resamples: int
    seed: int

    def interval(self, data: tuple[np.ndarray, ...], conf: float) -> tuple[np.ndarray, ...]:
        """Row-wise bootstrap CI of mean (one sample) or mean difference (two samples)."""

        def mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
            return x.mean(axis=axis) - y.mean(axis=axis)

        statistic = np.mean if len(data) == 1 else mean_diff
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(
                data,
                statistic,
                n_resamples=self.n_resamples,
                confidence_level=conf,
                method=self.method,
                axis=-1,
                vectorized=True,
                rng=np.random.default_rng(self.seed),
            )
        return np.atleast_1d(res.confidence_interval.low), np.atleast_1d(
            res.confidence_interval.high
        )


def _nan_mean_std(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and ddof=1 std ignoring NaN, without all-NaN warnings."""
    n = (~np.isnan(x)).sum(axis=axis)
    with np.errstate(all="ignore"):
        total = np.nansum(x, axis=axis)
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        dev = np.where(np.isnan(x), 0.0, x - np.expand_dims(mean, axis))
        var = (dev**2).sum(axis=axis) / (n - 1)
    std = np.where(n >= 2, np.sqrt(var), np.nan)
    return n, mean, std


def _cell_intervals(
    table: _Table, n: np.ndarray, mean: np.ndarray, std: np.ndarray, conf: float, boot: _Boot | None
) -> tuple[np.ndarray, np.ndarray]:
    """t (or bootstrap) interval for each variant x metric mean; NaN where n < 2."""
    lo = np.full(n.shape, np.nan)
    hi = np.full(n.shape, np.nan)
    ok = n >= 2
    with np.errstate(all="ignore"):
        half = stats.t.ppf(0.5 + conf / 2, np.where(ok, n - 1, 1)) * std / np.sqrt(n)
    lo[ok] = (mean - half)[ok]
    hi[ok] = (mean + half)[ok]
    if boot is None:
        return lo, hi
    by_cell = np.moveaxis(table.values, 1, 2)  # [V, M, S]
    mask = ~np.isnan(by_cell)
    for k in np.unique(n[ok]):
        vi, mi = np.nonzero(n == k)
        data = by_cell[vi, mi][mask[vi, mi]].reshape(-1, k)
        lo[vi, mi], hi[vi, mi] = boot.interval((data,), conf)
    return lo, hi


def _cells(table: _Table, conf: float, boot: _Boot | None) -> list[dict[str, Cell]]:
    """Per variant, per metric summary objects."""
    n, mean, std = _nan_mean_std(table.values, axis=1)  # [V, M]
    lo, hi = _cell_intervals(table, n, mean, std, conf, boot)
    method = "t" if boot is None else f"bootstrap-{boot.method}"
    seeds = table.seeds.tolist()
    vals = np.moveaxis(table.values, 1, 2).tolist()  # [V][M][S]
    out: list[dict[str, Cell]] = []
    for vi in range(len(table.names)):
        row: dict[str, Cell] = {}
        for mi, metric in enumerate(table.metrics):
            k = int(n[vi, mi])
            pairs = [(s, x) for s, x in zip(seeds, vals[vi][mi], strict=True) if x == x]
            ci = None
            note = None
            if k == 0:
                note = "no finished seeds"
            elif k == 1:
                note = "single seed: no interval possible"
            elif math.isfinite(lo[vi, mi]):
                ci = Interval(low=lo[vi, mi], high=hi[vi, mi], level=conf, method=method)
                if std[vi, mi] == 0:
                    note = "zero variance across seeds"
            else:
                note = "interval not computable (degenerate bootstrap)"
            row[metric] = Cell(
                metric=metric,
                n=k,
                n_unfinished=int(table.n_unfinished[vi]),
                n_missing=int(table.n_missing[vi, mi]),
                mean=_f(mean[vi, mi]),
                std=_f(std[vi, mi]),
                ci=ci,
                seeds=[s for s, _ in pairs],
                values=[x for _, x in pairs],
                note=note,
            )
        out.append(row)
    return out


def _f(x: float) -> float | None:
    """numpy scalar -> float, NaN/inf -> None (JSON has no NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------- comparisons


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
        r = len(n_a)
        nan = [np.full(r, np.nan) for _ in range(8)]
        return cls(n_a, n_b, delta, *nan, test=np.zeros(r, dtype=int))


def _pair_stats(
    values: np.ndarray, pairs: Sequence[tuple[int, int]], conf: float, boot: _Boot | None
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
    n_a, mean_a, _ = _nan_mean_std(A, axis=1)
    n_b, mean_b, _ = _nan_mean_std(B, axis=1)
    out = _PairStats.empty(n_a, n_b, mean_a - mean_b)
    z = stats.norm.ppf(0.5 + conf / 2)
    paired = (ma == mb).all(axis=1) & (n_a >= 2)
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
    boot: _Boot | None,
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
    if boot is not None:
        out.lo[rows], out.hi[rows] = boot.interval((d,), conf)


def _welch_group(
    out: _PairStats,
    rows: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    conf: float,
    z: float,
    boot: _Boot | None,
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
    if boot is not None:
        out.lo[rows], out.hi[rows] = boot.interval((a, b), conf)


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


def _comparisons(
    table: _Table,
    pairs: Sequence[tuple[int, int]],
    directions: dict[str, Direction],
    conf: float,
    alpha: float,
    correction: str,
    boot: _Boot | None,
) -> list[dict[str, Comparison]]:
    """Comparison objects per pair (same order as ``pairs``), keyed by metric."""
    if not pairs:
        return []
    n_metrics = len(table.metrics)
    ps = _pair_stats(table.values, pairs, conf, boot)
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
            )
        out.append(row)
    return out


def _comparison(
    r: dict,
    *,
    variant: str,
    reference: str,
    metric: str,
    direction: Direction,
    verdict: str,
    conf: float,
    ci_method: str | None,
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
        delta=_f(r["delta"]),
        ci=ci,
        df=_f(r["df"]),
        statistic=_f(r["stat"]),
        p=_f(r["p"]),
        p_corrected=_f(r["p_corr"]),
        effect_size=eff,
        verdict=verdict,
        note=note,
    )


# ----------------------------------------------------------------------- factorial


def _factor_order(view: ExperimentView) -> list[str]:
    """Factors in order of first appearance in the spec."""
    seen: dict[str, None] = {}
    for v in view.variants:
        for f in v.factor_levels:
            seen.setdefault(f, None)
    return list(seen)


def _factor_levels(view: ExperimentView, factors: list[str], baseline: str) -> dict[str, list[str]]:
    """Levels per factor, the baseline's level first (it is the reference level)."""
    base = next((v for v in view.variants if v.name == baseline), None)
    levels: dict[str, list[str]] = {}
    for f in factors:
        seen = list(
            dict.fromkeys(v.factor_levels[f] for v in view.variants if f in v.factor_levels)
        )
        ref = base.factor_levels.get(f) if base else None
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


def _fit_factorial(df, cols: list[str], kinds: dict[str, bool]):
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


def _factorial_effects(
    view: ExperimentView, table: _Table, baseline: str, conf: float
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


def _factorial_frame(view, table, mi, usable, cols, levels, two_level):
    """Long per-seed frame: y plus one column per factor (numeric +-1/2 or level label)."""
    import pandas as pd

    vidx = {n: i for i, n in enumerate(table.names)}
    rows: dict[str, list] = {"y": [], **{c: [] for c in cols}}
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


def _effects_from_model(metric, model, anova, name_of, levels, two_level, conf):
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
            F=_f(row["F"]),
            df_num=_f(row["df"]),
            df_den=df_res,
            p=_f(row["PR(>F)"]),
            partial_eta_sq=_f(ss / (ss + ss_res)) if ss + ss_res > 0 else None,
        )
        if all(two_level[c] for c in cols) and term in params:
            lo, hi = bounds[term].values()
            eff.estimate = _f(params[term])
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


# -------------------------------------------------------------------------- curves


def _curves(view: ExperimentView, metric: str) -> list[Curve]:
    """Mean/std per step over seeds (done or still running) for each variant."""
    points: dict[str, list[list[tuple[int, float]]]] = {}
    for t in view.trials:
        h = t.history.get(metric)
        if h:
            points.setdefault(t.variant, []).append(h)
    out: list[Curve] = []
    for v in view.variants:
        runs = points.get(v.name)
        if not runs:
            continue
        arr = np.array([p for run in runs for p in run], dtype=float).reshape(-1, 2)
        arr = arr[np.isfinite(arr[:, 1])]
        if not len(arr):
            continue
        steps, inv = np.unique(arr[:, 0].astype(int), return_inverse=True)
        n = np.bincount(inv)
        s1 = np.bincount(inv, weights=arr[:, 1])
        mean = s1 / n
        ss = np.bincount(inv, weights=(arr[:, 1] - mean[inv]) ** 2)
        with np.errstate(all="ignore"):
            std = np.where(n >= 2, np.sqrt(ss / (n - 1)), np.nan)
        out.append(
            Curve(
                variant=v.name,
                metric=metric,
                steps=steps.tolist(),
                mean=mean.tolist(),
                std=[_f(s) for s in std],
                n=n.tolist(),
            )
        )
    return out


# ------------------------------------------------------------------------- analyze


def _validate(
    view: ExperimentView,
    baseline: str,
    alpha: float,
    correction: str,
    ci_method: str,
    n_boot: int,
    bootstrap_method: str,
) -> None:
    """Fail early with a ValueError that names the offending argument."""
    from statsmodels.stats.multitest import multipletests

    names = [v.name for v in view.variants]
    if not names:
        raise ValueError("view.variants is empty: nothing to analyze")
    if len(set(names)) != len(names):
        raise ValueError("view.variants has duplicate names")
    if baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not a variant of {view.name!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if ci_method not in ("t", "bootstrap"):
        raise ValueError(f"ci_method must be 't' or 'bootstrap', got {ci_method!r}")
    if ci_method == "bootstrap":
        if bootstrap_method not in BOOTSTRAP_METHODS:
            raise ValueError(f"bootstrap_method must be one of {BOOTSTRAP_METHODS}")
        if n_boot < 100:
            raise ValueError(f"n_boot must be >= 100, got {n_boot}")
    if correction not in ("none", "holm"):
        try:
            multipletests([0.5], alpha=alpha, method=correction)
        except Exception as exc:
            raise ValueError(
                f"correction {correction!r} is not a statsmodels multipletests method "
                "(e.g. 'holm', 'bonferroni', 'fdr_bh') or 'none'"
            ) from exc


def _metric_list(view: ExperimentView) -> list[str]:
    """Spec metrics with the primary metric first if the spec forgot it."""
    metrics = list(dict.fromkeys(view.metrics))
    if view.primary_metric not in metrics:
        metrics.insert(0, view.primary_metric)
    return metrics


def _best(cells: list[dict[str, Cell]], names: list[str], metrics, directions) -> dict:
    """Best variant(s) per metric by mean, respecting direction; ties all win."""
    best: dict[str, list[str]] = {}
    for m in metrics:
        means = [(c[m].mean, n) for c, n in zip(cells, names, strict=True) if c[m].mean is not None]
        if not means:
            best[m] = []
            continue
        pick = max if directions[m] == "higher" else min
        top = pick(x for x, _ in means)
        best[m] = [n for x, n in means if math.isclose(x, top, rel_tol=1e-12, abs_tol=1e-12)]
    return best


def _global_notes(conf, correction, ci_method, boot, design, directions, guessed) -> list[str]:
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
        "Delta = variant - reference. Paired t-test when both have the same seeds (>= 2), "
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
    """
    baseline = baseline or view.baseline
    _validate(view, baseline, alpha, correction, ci_method, n_boot, bootstrap_method)
    conf = 1.0 - alpha
    boot = _Boot(bootstrap_method, n_boot, boot_seed) if ci_method == "bootstrap" else None
    metrics = _metric_list(view)
    dirs = {m: metric_direction(m, directions) for m in metrics}
    guessed = [
        m for m in metrics if not (directions and m in directions) and _guess_direction(m) is None
    ]
    table = _collect(view, metrics)
    cells = _cells(table, conf, boot)
    names = table.names
    bi = names.index(baseline)
    others = [i for i in range(len(names)) if i != bi]
    vs_base = _comparisons(table, [(i, bi) for i in others], dirs, conf, alpha, correction, boot)
    by_base = dict(zip(others, vs_base, strict=True))
    by_prev: dict[int, dict[str, Comparison]] = {}
    if view.design == "add_one_in" and len(names) > 1:
        prev_pairs = [(i, i - 1) for i in range(1, len(names))]
        prev = _comparisons(table, prev_pairs, dirs, conf, alpha, correction, boot)
        by_prev = {i: c for (i, _), c in zip(prev_pairs, prev, strict=True)}
    notes = _global_notes(conf, correction, ci_method, boot, view.design, dirs, guessed)
    notes.extend(table.notes)
    effects: list[FactorEffect] = []
    if view.design == "factorial":
        effects, fnotes = _factorial_effects(view, table, baseline, conf)
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
    return Analysis(
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
        curves=_curves(view, view.primary_metric),
        notes=notes,
    )

