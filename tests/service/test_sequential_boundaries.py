"""Group-sequential boundaries against published values, and the t bounds against simulation.

References: Jennison & Turnbull (2000), Tables 2.1 (Pocock's constant C_P(K, 0.05)) and 2.3
(O'Brien-Fleming's C_B(K, 0.05)); gsDesign's Lan-DeMets spending bounds for K = 5 equally
spaced looks, two-sided alpha 0.05 (sfLDOF: 4.8769 3.3569 2.6803 2.2898 2.0310; sfLDPocock:
2.4380 2.4268 2.4101 2.3966 2.3860); Student's t table (t_{0.975, 4} = 2.776, t_{0.975, 9} =
2.262).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from service.analysis.boundaries import (
    increments,
    no_crossing_probability,
    spent,
    t_boundaries,
    z_boundaries,
)
from service.analysis.calibration import binomial_interval

EQUAL5 = (0.2, 0.4, 0.6, 0.8, 1.0)


def equally_spaced(k: int) -> tuple[float, ...]:
    return tuple((i + 1) / k for i in range(k))


@pytest.mark.parametrize(("k", "pocock", "obrien_fleming"), [
    (2, 2.178, 1.977), (3, 2.289, 2.004), (4, 2.361, 2.024), (5, 2.413, 2.040),
])
def test_classic_constants_from_the_joint_normal_law(k, pocock, obrien_fleming) -> None:
    f = equally_spaced(k)

    def constant(shape):
        return optimize.brentq(
            lambda c: 1 - no_crossing_probability([c * s for s in shape], f) - 0.05, 1.5, 4.0)

    assert constant([1.0] * k) == pytest.approx(pocock, abs=1.5e-3)
    assert constant([math.sqrt(k / (i + 1)) for i in range(k)]) == pytest.approx(
        obrien_fleming, abs=1.5e-3)


def test_lan_demets_obrien_fleming_bounds_match_gsdesign() -> None:
    got = z_boundaries(EQUAL5, 0.05, "obrien_fleming")
    assert got == pytest.approx((4.8769, 3.3569, 2.6803, 2.2898, 2.0310), abs=2e-3)


def test_lan_demets_pocock_bounds_match_gsdesign() -> None:
    got = z_boundaries(EQUAL5, 0.05, "pocock")
    assert got == pytest.approx((2.4380, 2.4268, 2.4101, 2.3966, 2.3860), abs=2e-3)


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
def test_spending_is_increasing_and_reaches_alpha(spending) -> None:
    ts = np.linspace(0.1, 1.0, 50)
    values = [spent(spending, float(t), 0.05) for t in ts]
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    assert values[-1] == pytest.approx(0.05, abs=1e-12)
    assert sum(increments(spending, EQUAL5, 0.05)) == pytest.approx(0.05, abs=1e-12)
    assert spent("obrien_fleming", 0.2, 0.05) < 1e-5 < spent("pocock", 0.2, 0.05)


def test_one_look_is_the_t_quantile() -> None:
    assert t_boundaries((5,), 0.05) == pytest.approx((2.776,), abs=1e-3)
    assert t_boundaries((10,), 0.05) == pytest.approx((2.262,), abs=1e-3)


def test_t_bounds_approach_the_z_bounds_with_many_seeds() -> None:
    """Past the first look (the exact t quantile, still heavier-tailed than the normal at the
    0.0002 it spends there) the simulated bounds meet the normal-theory ones."""
    looks = (200, 400, 600)
    z = z_boundaries((1 / 3, 2 / 3, 1.0), 0.05, "obrien_fleming")
    t = t_boundaries(looks, 0.05, "obrien_fleming", simulations=100_000)
    first = increments("obrien_fleming", (1 / 3, 2 / 3, 1.0), 0.05)[0]
    assert t[0] == pytest.approx(float(stats.t.ppf(1 - first / 2, 199)), abs=1e-6)
    assert t[1:] == pytest.approx(z[1:], abs=0.05)


def _crossing_rate(bounds, looks, paths: int, seed: int) -> tuple[int, int]:
    """Independent null simulation (another generator, another code path)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((paths, looks[-1]))
    crossed = np.zeros(paths, dtype=bool)
    for n, c in zip(looks, bounds, strict=True):
        d = x[:, :n]
        t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
        crossed |= np.abs(t) >= c
    return int(crossed.sum()), paths


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
def test_t_bounds_keep_alpha_with_three_to_ten_seeds(spending) -> None:
    looks = tuple(range(3, 11))
    hits, n = _crossing_rate(t_boundaries(looks, 0.05, spending), looks, 200_000, seed=7)
    lo, hi = binomial_interval(hits, n)
    assert lo <= 0.05 <= hi, (hits / n, lo, hi)


def test_z_bounds_on_a_t_statistic_would_claim_too_often() -> None:
    """Why the t bounds: with 3 to 10 seeds the variance is estimated, and the normal-theory
    bounds let far more than 5% of null experiments through."""
    looks = (3, 6, 10)
    z = z_boundaries(tuple(n / 10 for n in looks), 0.05, "pocock")
    hits, n = _crossing_rate(z, looks, 50_000, seed=8)
    assert binomial_interval(hits, n)[0] > 0.08


def test_bounds_are_deterministic_and_inputs_checked() -> None:
    looks = (3, 5, 8)
    assert t_boundaries.__wrapped__(looks, 0.05) == t_boundaries.__wrapped__(looks, 0.05)
    with pytest.raises(ValueError, match="increasing"):
        t_boundaries((5, 5), 0.05)
    with pytest.raises(ValueError, match="from 2 up"):
        t_boundaries((1, 3), 0.05)
    with pytest.raises(ValueError, match="alpha"):
        t_boundaries((3, 5), 1.5)
    with pytest.raises(ValueError, match="fraction 1"):
        z_boundaries((0.5, 0.9), 0.05)
