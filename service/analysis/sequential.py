"""Adaptive seeds: after each look, which comparisons are decided and which need more seeds.

Each comparison (a variant against the baseline, paired by seed) is a group-sequential paired t
test. Its looks are at planned seed counts (``Schedule``: initial, initial + step, ..., max);
at look k it uses its first n_k seeds. Error control, for the whole family of comparisons:

* across looks, alpha spending (``boundaries.t_boundaries``: bounds on the t statistic that are
  exact under normal differences, however few the seeds);
* optionally, non-binding futility by conditional power (``StoppingRule.futility``): a
  comparison that, at its current trend, would be unlikely to cross the last bound stops as
  *futile*; giving up a chance to reject never raises the error rate;
* across comparisons, Holm as a graphical procedure for group-sequential designs (Maurer &
  Bretz 2013): every comparison not yet shown starts at level alpha / m; once one is shown,
  the others are tested at alpha / (m - 1), and so on, against their whole path of looks so far
  (each level with its own boundaries). The family-wise error stays at alpha.

A comparison is decided *better* or *worse* when its |t| crosses its bound (the direction from
the metric's sign), or *no effect* (futility, only with a ``min_effect``) when its repeated
confidence interval lies within (-min_effect, +min_effect). Repeated CIs (Jennison & Turnbull,
ch. 9) use the same bounds, so they cover the true difference at every look at once with
probability 1 - level, whenever the experiment stops: they are the intervals reported. A
comparison neither decided nor at ``max`` continues; at ``max`` it is *undecided*, with the
seeds a fixed design would need to decide it at the observed effect and variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from service.analysis.boundaries import Spending, t_boundaries

Decision = Literal["better", "worse", "no_effect", "futile", "continue", "undecided"]
DECIDED: frozenset[str] = frozenset({"better", "worse", "no_effect", "futile"})
POWER = 0.8


@dataclass(frozen=True)
class Schedule:
    """Planned looks: ``initial`` seeds, then ``step`` more at a time, up to ``max``."""

    initial: int
    max: int
    step: int = 1

    def looks(self) -> tuple[int, ...]:
        planned = list(range(self.initial, self.max + 1, self.step))
        if planned[-1] != self.max:
            planned.append(self.max)
        return tuple(planned)


@dataclass(frozen=True)
class StoppingRule:
    alpha: float = 0.05
    spending: Spending = "obrien_fleming"
    min_effect: float | None = None
    """Differences smaller than this (metric units) are not worth having: a repeated CI inside
    (-min_effect, +min_effect) decides "no effect". None: no futility stopping."""
    higher_is_better: bool = True
    futility: float | None = None
    """Stop a comparison as *futile* when its conditional power (the chance that going on to
    ``max`` seeds would cross the last bound, if the effect is what it looks like now) falls
    under this. Non-binding: it only ever gives up a rejection, so alpha is kept. None: off."""


@dataclass
class Look:
    seeds: int
    delta: float
    se: float
    t: float
    bound: float
    """|t| at or past this decides, at the level the comparison had when last tested."""


@dataclass
class SequentialResult:
    name: str
    decision: Decision
    reason: str
    seeds: int
    """Seeds this comparison used (its last look's count)."""
    level: float
    """The Holm level it was last tested at (alpha / comparisons not yet shown)."""
    looks: list[Look] = field(default_factory=list)
    interval: tuple[float, float] = (math.nan, math.nan)
    """Repeated confidence interval for the difference at its last look."""
    seeds_needed: int | None = None
    """Undecided or continuing: seeds a fixed paired design needs for 80% power at level
    ``level`` against the observed difference and spread (None if it cannot say)."""


def paired_t(diffs: np.ndarray) -> tuple[float, float, float]:
    """Mean difference, its standard error, and the paired t statistic (inf when every seed
    gave the same non-zero difference; 0 when all are zero)."""
    values = [float(x) for x in diffs]  # plain floats: numpy's overhead dominates at 3-10 seeds
    n = len(values)
    delta = math.fsum(values) / n
    se = math.sqrt(math.fsum((x - delta) ** 2 for x in values) / (n - 1) / n)
    if se == 0.0:
        return delta, 0.0, (0.0 if delta == 0.0 else math.copysign(math.inf, delta))
    return delta, se, delta / se


MAX_SEEDS_NEEDED = 100_000


def _look_stats(diffs: np.ndarray, looks: tuple[int, ...]
                ) -> list[tuple[float, float, float] | None]:
    """``paired_t`` of the first n_k differences for each look (None where there are fewer);
    """
    d = np.asarray(diffs, dtype=float)
    out: list[tuple[float, float, float] | None] = []
    for n in looks:
        out.append(paired_t(d[:n]) if len(d) >= n else None)
    return out


def seeds_for_power(delta: float, sd: float, level: float, power: float = POWER) -> int | None:
    """The fewest seeds (>= 2) with which a fixed paired t design detects ``delta`` at ``level``
    with ``power``: statsmodels' power function, searched over whole seed counts (its own
    solver fails where the answer is 2 or very large). None when the spread is zero or the
    difference is zero, or past ``MAX_SEEDS_NEEDED``."""
    if not (math.isfinite(delta) and math.isfinite(sd)) or delta == 0.0 or sd <= 0.0:
        return None
    from statsmodels.stats.power import TTestPower

    def enough(n: int) -> bool:
        return float(TTestPower().power(effect_size=abs(delta) / sd, nobs=n, alpha=level,
                                        alternative="two-sided")) >= power

    lo, hi = 1, 2  # invariant: not enough(lo) (or lo == 1), enough(hi) once found
    while not enough(hi):
        lo, hi = hi, hi * 2
        if hi > MAX_SEEDS_NEEDED:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


def decide(diffs: dict[str, np.ndarray], schedule: Schedule, rule: StoppingRule,
           looks_taken: int) -> dict[str, SequentialResult]:
    """Replay the procedure over the first ``looks_taken`` planned looks.

    ``diffs[name]`` holds the comparison's paired differences (variant - baseline) in seed
    order; it may be longer than needed (later seeds are ignored) but must cover every look the
    comparison was still active at. Deterministic: the store, not memory, says which look an
    experiment is at, and replaying gives the same decisions a controller restart ago.
    """
    planned = schedule.looks()
    if not 1 <= looks_taken <= len(planned):
        raise ValueError(f"looks_taken must be in 1..{len(planned)}, got {looks_taken}")
    names = sorted(diffs)
    m = len(names)
    at_looks = {name: _look_stats(diffs[name], planned[:looks_taken]) for name in names}
    paths: dict[str, list[tuple[float, float, float]]] = {n: [] for n in names}
    results: dict[str, SequentialResult] = {}
    stopped_at: dict[str, int] = {}  # name -> index of the look it was decided at
    for k in range(looks_taken):
        for name in names:
            if name in stopped_at:
                continue
            stat = at_looks[name][k]
            if stat is None:
                raise ValueError(f"{name}: {len(diffs[name])} paired seeds, look {k + 1} needs "
                                 f"{planned[k]}")
            paths[name].append(stat)
        _holm_pass(names, paths, stopped_at, results, planned, rule, m, k)
        for name in names:
            if name not in stopped_at:
                _futility_or_wait(name, paths[name], results, stopped_at, planned, rule, m, k,
                                  _shown(results))
    return results


def with_seeds_needed(results: dict[str, SequentialResult]) -> dict[str, SequentialResult]:
    """Fill ``seeds_needed`` of every comparison not decided (the comparison's answer after a
    look; left out of ``decide`` so simulations replaying thousands of looks skip it)."""
    for r in results.values():
        if r.decision not in DECIDED:
            last = r.looks[-1]
            r.seeds_needed = seeds_for_power(last.delta, last.se * math.sqrt(last.seeds), r.level)
    return results


def _shown(results: dict[str, SequentialResult]) -> int:
    """Comparisons shown better or worse so far: Holm's level is alpha / (m - shown)."""
    return sum(r.decision in ("better", "worse") for r in results.values())


def _holm_pass(names: list[str], paths: dict[str, list[tuple[float, float, float]]],
               stopped_at: dict[str, int], results: dict[str, SequentialResult],
               planned: tuple[int, ...], rule: StoppingRule, m: int, k: int) -> None:
    """Reject what crosses at the current Holm level, raise the level, test again, until
    nothing more crosses (a raised level may reach back to an earlier look's statistic)."""
    while _shown(results) < m:
        level = rule.alpha / (m - _shown(results))
        bounds = t_boundaries(planned, level, rule.spending)
        newly = []
        for name in names:
            if name in stopped_at:
                continue
            for j, (delta, se, t) in enumerate(paths[name]):
                if abs(t) >= bounds[j]:
                    newly.append((name, j, delta, se, t, level, bounds))
                    break
        if not newly:
            return
        for name, j, delta, _se, t, level, bounds in newly:
            better = (delta > 0) == rule.higher_is_better
            stopped_at[name] = j
            results[name] = _result(
                name, "better" if better else "worse", paths[name][: j + 1], planned, bounds,
                level, f"|t| {abs(t):.2f} crossed the {rule.spending} bound {bounds[j]:.2f} at "
                f"look {j + 1} ({planned[j]} seeds; level {level:.4g})")


def _futility_or_wait(name: str, path: list[tuple[float, float, float]],
                      results: dict[str, SequentialResult], stopped_at: dict[str, int],
                      planned: tuple[int, ...], rule: StoppingRule, m: int, k: int,
                      shown: int) -> None:
    level = rule.alpha / (m - shown)
    bounds = t_boundaries(planned, level, rule.spending)
    delta, se, t = path[k]
    lo, hi = delta - bounds[k] * se, delta + bounds[k] * se
    if rule.min_effect is not None and -rule.min_effect < lo and hi < rule.min_effect:
        stopped_at[name] = k
        results[name] = _result(
            name, "no_effect", path, planned, bounds, level,
            f"the repeated CI [{lo:+.3g}, {hi:+.3g}] lies within +-{rule.min_effect:g} at look "
            f"{k + 1} ({planned[k]} seeds)")
        return
    last = k == len(planned) - 1
    if rule.futility is not None and not last:
        power = conditional_power(t, planned[k], planned[-1], bounds[-1])
        if power < rule.futility:
            stopped_at[name] = k
            results[name] = _result(
                name, "futile", path, planned, bounds, level,
                f"conditional power {power:.3f} < {rule.futility:g} at look {k + 1} "
                f"({planned[k]} seeds): at the current trend, {planned[-1]} seeds would not "
                "decide it")
            return
    reason = (f"|t| {abs(t):.2f} under the bound {bounds[k]:.2f} at the last look "
              f"({planned[k]} seeds)" if last else
              f"|t| {abs(t):.2f} under the bound {bounds[k]:.2f} at look {k + 1} "
              f"({planned[k]} seeds); next look at {planned[k + 1]}")
    results[name] = _result(name, "undecided" if last else "continue", path, planned, bounds,
                            level, reason)


def conditional_power(t: float, n: int, n_max: int, final_bound: float) -> float:
    """Chance that the final look (``n_max`` seeds) crosses ``final_bound`` (either side),
    given the paired t statistic ``t`` at ``n`` seeds and a true effect equal to the current
    estimate (Lan & Wittes 1988, the B-value at information fraction f = n / n_max:
    B(1) ~ N(z / sqrt(f), 1 - f)). t statistics and the t bound enter as their normal
    equivalents (same tail probability)."""
    from scipy import stats

    if n >= n_max:
        return float(abs(t) >= final_bound)
    z = stats.norm.isf(stats.t.sf(abs(t), n - 1)) if math.isfinite(t) else math.inf
    c = stats.norm.isf(stats.t.sf(final_bound, n_max - 1))
    f = n / n_max
    mean, sd = z / math.sqrt(f), math.sqrt(1.0 - f)
    return float(stats.norm.sf((c - mean) / sd) + stats.norm.cdf((-c - mean) / sd))


def _result(name: str, decision: Decision, path: list[tuple[float, float, float]],
            planned: tuple[int, ...], bounds: tuple[float, ...], level: float,
            reason: str) -> SequentialResult:
    looks = [Look(seeds=planned[j], delta=d, se=se, t=t, bound=bounds[j])
             for j, (d, se, t) in enumerate(path)]
    last = looks[-1]
    half = last.bound * last.se
    return SequentialResult(name=name, decision=decision, reason=reason, seeds=last.seeds,
                            level=level, looks=looks,
                            interval=(last.delta - half, last.delta + half))
