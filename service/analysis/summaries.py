"""Per-variant summaries: trial records as one dense array, then mean, std and interval per
variant x metric. The array and the bootstrap settings are shared with the comparisons."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from service.analysis.schema import Cell, ExperimentView, Interval, TrialLink, TrialRecord

# ------------------------------------------------------------------------ collect


@dataclass
class Table:
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
    fingerprints: list[dict[int, dict[str, str] | None]] = field(default_factory=list)
    """Per variant, seed -> what the done trial's seed controlled (None: not recorded)."""


def collect_table(view: ExperimentView, metrics: list[str]) -> Table:
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
    for (vi, seed), t in done.items():
        row = values[vi, sidx[seed]]
        for name, val in t.metrics.items():
            j = midx.get(name)
            if j is not None and math.isfinite(val):
                row[j] = val
    n_done = np.zeros(len(names), dtype=int)
    for vi, _ in done:
        n_done[vi] += 1
    n_missing = n_done[:, None] - (~np.isnan(values)).sum(axis=1)
    unfinished: list[set[int]] = [set() for _ in names]
    links: list[list[TrialLink]] = [[] for _ in names]
    for t in view.trials:
        if t.variant not in vidx:
            continue
        vi = vidx[t.variant]
        links[vi].append(TrialLink(seed=t.seed, status=t.status, mlflow_url=t.mlflow_url))
        if not t.done and (vi, t.seed) not in done:
            unfinished[vi].add(t.seed)
    for lst in links:
        lst.sort(key=lambda link: link.seed)
    return Table(
        names=names,
        metrics=metrics,
        seeds=seeds,
        values=values,
        n_done=n_done,
        n_unfinished=np.array([len(u) for u in unfinished], dtype=int),
        n_missing=n_missing,
        links=links,
        notes=notes,
        fingerprints=[{seed: t.fingerprints for (v, seed), t in done.items() if v == vi}
                      for vi in range(len(names))],
    )


# ------------------------------------------------------------------ bootstrap / CI


@dataclass(frozen=True)
class Boot:
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


def nan_mean_std(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    table: Table, n: np.ndarray, mean: np.ndarray, std: np.ndarray, conf: float, boot: Boot | None
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


def cell_summaries(table: Table, conf: float, boot: Boot | None) -> list[dict[str, Cell]]:
    """Per variant, per metric summary objects."""
    n, mean, std = nan_mean_std(table.values, axis=1)  # [V, M]
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
                mean=json_float(mean[vi, mi]),
                std=json_float(std[vi, mi]),
                ci=ci,
                seeds=[s for s, _ in pairs],
                values=[x for _, x in pairs],
                note=note,
            )
        out.append(row)
    return out


def json_float(x: float) -> float | None:
    """numpy scalar -> float, NaN/inf -> None (JSON has no NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None

