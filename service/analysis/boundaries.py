"""Group-sequential boundaries: how extreme a statistic must be at each look so that looking
again and again still claims an effect with probability at most alpha when there is none.

Two-sided, symmetric, with Lan-DeMets alpha spending (so looks need not be equally spaced and
a stopped comparison spends nothing more):

* ``obrien_fleming``: each side spends ``2 - 2 Phi(z_{1-alpha/4} / sqrt(t))`` of its alpha/2
  (Lan & DeMets' O'Brien-Fleming-like function, as gsDesign's ``sfLDOF`` does for a symmetric
  two-sided design): almost nothing early, nearly the fixed design's level at the end;
* ``pocock``: ``alpha(t) = alpha ln(1 + (e - 1) t)``: evenly, stopping early more often.

``z_boundaries`` is the textbook construction for a normal statistic with known variance: each
look's bound solves "first crossing at look k has the probability alpha(t_k) - alpha(t_k-1)",
the joint law of the looks' z statistics being normal with corr(Z_i, Z_j) = sqrt(t_i / t_j)
(scipy's multivariate normal CDF, Genz's algorithm, does the integral).

Seeds are few (3 to 10), and the variance is estimated: a z bound would claim too often. So
``t_boundaries`` does the same construction for the paired t statistic itself: under the null
with normal differences the law of (t_1, ..., t_K) at n_1 < ... < n_K does not depend on the
variance, so it is simulated once (fixed seed, deterministic) and each bound taken as the
quantile that spends exactly the increment; the first bound is the exact t quantile.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import optimize, stats

Spending = Literal["obrien_fleming", "pocock"]
SPENDING_FUNCTIONS: tuple[Spending, ...] = ("obrien_fleming", "pocock")

SIMULATIONS = 400_000
"""Null paths simulated per boundary set: the increment at a look is estimated from about
SIMULATIONS x increment crossings (a look spending 0.005 rests on ~2000 of them)."""
_CHUNK = 50_000


def spent(spending: Spending, t: float, alpha: float) -> float:
    """Cumulative two-sided alpha spent at information fraction ``t`` in (0, 1]."""
    if not 0.0 < t <= 1.0:
        raise ValueError(f"information fraction must be in (0, 1], got {t}")
    if spending == "obrien_fleming":  # alpha/2 per side, each spent as Lan-DeMets' function
        z = stats.norm.ppf(1.0 - alpha / 4.0)
        return float(2.0 * (2.0 - 2.0 * stats.norm.cdf(z / math.sqrt(t))))
    if spending == "pocock":
        return float(alpha * math.log(1.0 + (math.e - 1.0) * t))
    raise ValueError(f"unknown spending function {spending!r}")


def increments(spending: Spending, fractions: tuple[float, ...], alpha: float) -> list[float]:
    """Alpha spent at each look: alpha(t_k) - alpha(t_k-1); they sum to alpha at t = 1."""
    cumulative = [spent(spending, t, alpha) for t in fractions]
    return [b - a for a, b in zip([0.0, *cumulative[:-1]], cumulative, strict=True)]


def no_crossing_probability(bounds: list[float], fractions: tuple[float, ...]) -> float:
    """P(|Z_1| < c_1, ..., |Z_k| < c_k) for the standard normal looks at ``fractions``."""
    k = len(bounds)
    t = np.asarray(fractions[:k], dtype=float)
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    c = np.asarray(bounds, dtype=float)
    if k == 1:
        return float(stats.norm.cdf(c[0]) - stats.norm.cdf(-c[0]))
    return float(stats.multivariate_normal.cdf(
        c, mean=np.zeros(k), cov=cov, lower_limit=-c, abseps=1e-5, releps=1e-5,
        maxpts=50_000 * k, rng=np.random.default_rng(12345),  # Genz's QMC: fixed, deterministic
    ))


@lru_cache(maxsize=256)
def z_boundaries(fractions: tuple[float, ...], alpha: float,
                 spending: Spending = "obrien_fleming") -> tuple[float, ...]:
    """Two-sided z bounds for looks at increasing information ``fractions`` (last one 1)."""
    _check(fractions, alpha)
    bounds: list[float] = []
    cumulative = 0.0
    for k, inc in enumerate(increments(spending, fractions, alpha)):
        cumulative += inc
        if k == 0:
            bounds.append(float(stats.norm.ppf(1.0 - inc / 2.0)))
            continue
        target = 1.0 - cumulative  # P(no crossing up to and including look k)

        def gap(c: float, k: int = k, target: float = target) -> float:
            return no_crossing_probability([*bounds, c], fractions) - target

        bounds.append(float(optimize.brentq(gap, 0.5, 40.0, xtol=1e-5)))
    return tuple(bounds)


@lru_cache(maxsize=256)
def t_boundaries(looks: tuple[int, ...], alpha: float, spending: Spending = "obrien_fleming",
                 simulations: int = SIMULATIONS, seed: int = 20231) -> tuple[float, ...]:
    """Two-sided bounds on the paired t statistic at seed counts ``looks`` (n_1 >= 2, increasing;
    the last is the planned maximum). Deterministic: a fixed-seed simulation of null paths."""
    if looks[0] < 2 or any(b <= a for a, b in zip(looks, looks[1:], strict=False)):
        raise ValueError(f"looks must be increasing seed counts from 2 up, got {looks}")
    fractions = tuple(n / looks[-1] for n in looks)
    _check(fractions, alpha)
    incs = increments(spending, fractions, alpha)
    first = float(stats.t.ppf(1.0 - incs[0] / 2.0, looks[0] - 1))
    if len(looks) == 1:
        return (first,)
    paths = _null_t_paths(looks, simulations, seed)  # (simulations, K) |t| per look
    alive = paths[:, 0] < first
    bounds = [first]
    for k in range(1, len(looks)):
        crossings = round(incs[k] * simulations)  # how many alive paths may cross here
        candidates = np.sort(paths[alive, k])[::-1]
        if crossings <= 0:
            bound = float(candidates[0]) + 1e-9 if len(candidates) else math.inf
        elif crossings >= len(candidates):
            bound = 0.0
        else:  # the bound between the crossings-th and next largest |t| of surviving paths
            bound = float((candidates[crossings - 1] + candidates[crossings]) / 2.0)
        bounds.append(bound)
        alive &= paths[:, k] < bound
    return tuple(bounds)


def _null_t_paths(looks: tuple[int, ...], simulations: int, seed: int) -> np.ndarray:
    """|t| at each look of ``simulations`` paths of standard normal differences."""
    rng = np.random.default_rng(seed)
    n = np.asarray(looks)
    out = np.empty((simulations, len(looks)))
    for start in range(0, simulations, _CHUNK):
        size = min(_CHUNK, simulations - start)
        x = rng.standard_normal((size, looks[-1]))
        s1 = np.cumsum(x, axis=1)[:, n - 1]
        s2 = np.cumsum(x * x, axis=1)[:, n - 1]
        mean = s1 / n
        var = (s2 - n * mean * mean) / (n - 1)
        out[start:start + size] = np.abs(mean) / np.sqrt(np.maximum(var, 1e-300) / n)
    return out


def _check(fractions: tuple[float, ...], alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not fractions or abs(fractions[-1] - 1.0) > 1e-12:
        raise ValueError(f"the last look must be at information fraction 1, got {fractions}")
    if any(b <= a for a, b in zip(fractions, fractions[1:], strict=False)) or fractions[0] <= 0:
        raise ValueError(f"information fractions must increase from above 0, got {fractions}")
