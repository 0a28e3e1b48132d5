"""The adaptive-seeds procedure on hand-made differences, and its error rates by simulation.

Bounds used below (t scale, looks at 3, 4, 5 seeds, O'Brien-Fleming-like spending), from
``test_sequential_boundaries``' checked construction: level 0.05 -> 11.39, 4.60, 3.10; level
0.025 -> 19.87, 6.21, 3.84. Sample sizes for 80% power of a two-sided paired t test at 0.05
(Cohen 1988; G*Power): d = 0.5 -> 34, d = 0.8 -> 15, d = 1.0 -> 10.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.analysis.calibration import binomial_interval, simulate
from service.analysis.sequential import (
    Schedule,
    StoppingRule,
    conditional_power,
    decide,
    seeds_for_power,
    with_seeds_needed,
)

LOOKS_345 = Schedule(initial=3, max=5, step=1)
CLEAR = np.array([10.0, 10.5, 9.5, 10.2, 9.8])  # look 1: mean 10, se 0.289, t 34.6
BORDERLINE = np.array([1.0, 2.0, 0.0, 2.5, 1.5])  # t 1.73, 2.48, 3.26 at 3, 4, 5 seeds
NULL = np.array([0.1, -0.1, 0.2, -0.2, 0.0])


def test_schedule_looks_end_at_max() -> None:
    assert Schedule(3, 10, 1).looks() == (3, 4, 5, 6, 7, 8, 9, 10)
    assert Schedule(3, 10, 3).looks() == (3, 6, 9, 10)
    assert Schedule(4, 4, 1).looks() == (4,)


def test_a_clear_effect_is_decided_at_the_first_look_with_its_repeated_ci() -> None:
    (r,) = decide({"ITC": CLEAR}, LOOKS_345, StoppingRule(), looks_taken=1).values()
    assert r.decision == "better" and r.seeds == 3 and len(r.looks) == 1
    assert r.looks[0].t == pytest.approx(34.64, abs=0.01)
    assert r.looks[0].bound == pytest.approx(11.39, abs=0.02)
    assert "look 1 (3 seeds" in r.reason
    assert r.interval == pytest.approx((10 - 11.393 * 0.2887, 10 + 11.393 * 0.2887), abs=0.02)


def test_lower_is_better_turns_the_verdict() -> None:
    rule = StoppingRule(higher_is_better=False)
    assert decide({"v": CLEAR}, LOOKS_345, rule, 1)["v"].decision == "worse"
    assert decide({"v": -CLEAR}, LOOKS_345, rule, 1)["v"].decision == "better"


def test_holm_passes_a_shown_comparisons_level_to_the_others() -> None:
    """BORDERLINE's t of 3.26 at 5 seeds is past the level-0.05 bound (3.10) but not the
    level-0.025 one (3.84): it is decided only once the other comparison is shown."""
    with_clear = decide({"a": CLEAR, "b": BORDERLINE}, LOOKS_345, StoppingRule(), 3)
    assert with_clear["a"].decision == "better" and with_clear["a"].seeds == 3
    assert with_clear["a"].level == pytest.approx(0.025)
    b = with_clear["b"]
    assert b.decision == "better" and b.seeds == 5 and b.level == pytest.approx(0.05)
    with_null = decide({"a": NULL, "b": BORDERLINE}, LOOKS_345, StoppingRule(), 3)
    assert with_null["b"].decision == "undecided"
    assert with_null["b"].level == pytest.approx(0.025)
    assert with_null["b"].looks[-1].bound == pytest.approx(3.84, abs=0.02)


def test_continue_then_undecided_at_max_with_the_seeds_it_would_need() -> None:
    rule = StoppingRule()
    assert decide({"b": BORDERLINE}, Schedule(3, 5, 1), rule, 2)["b"].decision == "continue"
    r = with_seeds_needed(decide({"b": NULL}, LOOKS_345, rule, 3))["b"]
    assert r.decision == "undecided" and r.seeds == 5
    assert r.seeds_needed is None  # the observed mean difference is exactly 0
    r = with_seeds_needed(decide({"b": BORDERLINE[:3]}, Schedule(3, 3), rule, 1))["b"]
    # one look at 3 seeds: mean 1, sd 1 -> d = 1 -> 10 seeds at level 0.05 (Cohen)
    assert r.decision == "undecided" and r.seeds_needed == 10


def test_ties_and_saturation() -> None:
    zeros = np.zeros(5)
    rule = StoppingRule(min_effect=1.0)
    r = decide({"same": zeros}, LOOKS_345, rule, 1)["same"]
    assert r.decision == "no_effect" and r.interval == (0.0, 0.0) and r.seeds == 3
    assert decide({"same": zeros}, LOOKS_345, StoppingRule(), 3)["same"].decision == "undecided"
    r = decide({"const": np.full(5, 2.0)}, LOOKS_345, StoppingRule(), 1)["const"]
    assert r.decision == "better" and r.looks[0].t == float("inf")


def test_futility_needs_the_repeated_ci_inside_the_margin() -> None:
    tiny = np.array([0.01, -0.01, 0.0, 0.01, -0.01])
    r = decide({"v": tiny}, LOOKS_345, StoppingRule(min_effect=1.0), 1)["v"]
    assert r.decision == "no_effect" and "within +-1" in r.reason
    wide = np.array([0.5, -0.5, 0.0, 0.4, -0.4])  # RCI at 3 seeds: 0 +- 11.39 * 0.289
    assert decide({"v": wide}, LOOKS_345, StoppingRule(min_effect=1.0), 1)["v"].decision \
        == "continue"


def test_replaying_more_looks_keeps_earlier_decisions() -> None:
    diffs = {"a": CLEAR, "b": BORDERLINE, "c": NULL}
    first = decide(diffs, LOOKS_345, StoppingRule(), 1)
    last = decide(diffs, LOOKS_345, StoppingRule(), 3)
    assert first["a"].decision == last["a"].decision == "better"
    assert first["a"].looks == last["a"].looks


def test_missing_seeds_and_bad_looks_are_refused() -> None:
    with pytest.raises(ValueError, match="look 2 needs 4"):
        decide({"v": BORDERLINE[:3]}, LOOKS_345, StoppingRule(), 2)
    with pytest.raises(ValueError, match="looks_taken"):
        decide({"v": CLEAR}, LOOKS_345, StoppingRule(), 4)


@pytest.mark.parametrize(("d", "n"), [(0.5, 34), (0.8, 15), (1.0, 10)])
def test_seeds_for_power_matches_cohens_table(d, n) -> None:
    assert seeds_for_power(d, 1.0, 0.05) == n


def test_a_a_experiments_claim_at_most_alpha() -> None:
    """2000 simulated experiments, three null variants against a baseline, seeds 3 to 10: the
    share with any claim is not above alpha (its 95% interval reaches below 0.05)."""
    adaptive, fixed = simulate([0.0, 0.0, 0.0], 1.0, Schedule(3, 10, 1), StoppingRule(),
                               experiments=2000, seed=11)
    lo, hi = binomial_interval(round(adaptive.any_false_claim * 2000), 2000)
    assert lo <= 0.05, (adaptive, lo, hi)
    assert fixed.any_false_claim <= 0.06


def test_a_large_effect_is_found_with_fewer_seeds_than_the_fixed_design() -> None:
    adaptive, fixed = simulate([3.0], 1.0, Schedule(3, 10, 1), StoppingRule(),
                               experiments=300, seed=12)
    assert adaptive.power >= fixed.power - 0.01
    assert adaptive.mean_seeds_per_arm < 0.6 * fixed.mean_seeds_per_arm


def test_conditional_power_from_the_b_value() -> None:
    """Lan & Wittes (1988): B(f) = z sqrt(f); at the current trend B(1) ~ N(z / sqrt(f), 1 - f).
    Many seeds make the t statistics normal: z 0 halfway gives 2 P(N(0,1) > 1.96 / sqrt(0.5))
    = 0.00557; z 2 at a quarter gives P(N(4, 0.75) > 1.96) = 0.9908."""
    from scipy import stats

    c = stats.t.isf(0.025, 999)  # the last bound, two-sided 0.05, as a t quantile
    assert conditional_power(0.0, 500, 1000, c) == pytest.approx(0.00557, abs=2e-4)
    assert conditional_power(2.0, 250, 1000, c) == pytest.approx(0.9908, abs=2e-3)
    assert conditional_power(-2.0, 250, 1000, c) == pytest.approx(0.9908, abs=2e-3)
    assert conditional_power(math.inf, 3, 10, 3.0) == 1.0  # saturation: zero spread
    assert conditional_power(1.0, 10, 10, 2.26) == 0.0  # at max: crossed or not


def test_futility_stops_a_flat_comparison_and_never_a_clear_one() -> None:
    flat = np.array([0.1, -0.1, 0.05, -0.05, 0.0, 0.1, -0.1, 0.0, 0.05, -0.05])
    rule = StoppingRule(futility=0.1)
    r = decide({"flat": flat, "clear": np.full(10, 5.0) + flat}, Schedule(3, 10, 1), rule, 1)
    assert r["flat"].decision == "futile" and "conditional power" in r["flat"].reason
    assert r["clear"].decision == "continue"  # a huge t, not yet past O'Brien-Fleming's bound
    later = decide({"flat": flat, "clear": np.full(10, 5.0) + flat}, Schedule(3, 10, 1), rule, 4)
    assert later["clear"].decision == "better" and later["flat"].seeds == 3


def test_futility_keeps_the_a_a_rate_and_saves_seeds_on_nulls() -> None:
    adaptive, fixed = simulate([0.0, 0.0, 0.0], 1.0, Schedule(3, 10, 1),
                               StoppingRule(futility=0.1), experiments=1000, seed=13)
    lo, _ = binomial_interval(round(adaptive.any_false_claim * 1000), 1000)
    assert lo <= 0.05
    assert adaptive.mean_seeds_per_arm < 0.7 * fixed.mean_seeds_per_arm
