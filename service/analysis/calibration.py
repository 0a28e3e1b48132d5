"""Simulated experiments that measure the adaptive procedure against the fixed design it
replaces: how often it claims an effect that is not there, how often it finds one that is, and
how many trials each spends.

An experiment is a baseline and ``len(effects)`` variants, each seed a trial whose metric is
normal with the arm's mean; the seed's own luck is shared by the arms (paired), so a
variant's differences from the baseline have spread ``sd`` and two variants' differences are
correlated through the shared baseline, as in a real ablation. The fixed design runs every arm
at ``max`` seeds and tests each comparison with the paired t test and Holm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from service.analysis.pairwise import holm
from service.analysis.sequential import Schedule, StoppingRule, decide


@dataclass(frozen=True)
class Outcome:
    claims: dict[str, str]
    """Per comparison: better, worse, no_effect, futile or undecided."""
    trials: int
    """Trials run: the baseline's seeds plus each variant's."""


def arms(rng: np.random.Generator, effects: list[float], sd: float, n: int
         ) -> dict[str, np.ndarray]:
    """Paired differences variant - baseline for ``n`` seeds: each arm's noise has variance
    sd^2 / 2 so a difference has sd; the baseline's noise is shared by every comparison."""
    noise = sd / math.sqrt(2.0)
    seed_luck = rng.normal(0.0, 1.0, n)  # cancels in a paired difference
    base = seed_luck + rng.normal(0.0, noise, n)
    return {f"v{i}": (seed_luck + e + rng.normal(0.0, noise, n)) - base
            for i, e in enumerate(effects)}


def adaptive(diffs: dict[str, np.ndarray], schedule: Schedule, rule: StoppingRule) -> Outcome:
    """Look after look until every comparison is decided or ``max`` is reached."""
    looks = schedule.looks()
    for k in range(1, len(looks) + 1):
        results = decide(diffs, schedule, rule, k)
        if all(r.decision != "continue" for r in results.values()):
            break
    seeds = {name: r.seeds for name, r in results.items()}
    baseline = max(seeds.values())
    return Outcome({n: r.decision for n, r in results.items()},
                   baseline + sum(seeds.values()))


def fixed(diffs: dict[str, np.ndarray], n: int, alpha: float, higher_is_better: bool = True
          ) -> Outcome:
    """Every arm at ``n`` seeds; paired t tests, Holm across the comparisons."""
    names = sorted(diffs)
    tests = [stats.ttest_1samp(np.asarray(diffs[name][:n]), 0.0) for name in names]
    pvalues = [float(t.pvalue) if np.isfinite(t.pvalue) else 1.0 for t in tests]
    reject = holm(np.asarray(pvalues)) <= alpha
    claims = {}
    for name, rejected, test in zip(names, reject, tests, strict=True):
        up = float(test.statistic) > 0
        claims[name] = ("better" if up == higher_is_better else "worse") if rejected \
            else "undecided"
    return Outcome(claims, n * (len(names) + 1))


@dataclass(frozen=True)
class Rates:
    experiments: int
    any_false_claim: float
    """Share of experiments with at least one better/worse claim on a null comparison."""
    power: float
    """Share of planted (non-null) comparisons claimed in the right direction."""
    mean_trials: float
    mean_seeds_per_arm: float


def simulate(effects: list[float], sd: float, schedule: Schedule, rule: StoppingRule,
             experiments: int, seed: int = 0) -> tuple[Rates, Rates]:
    """(adaptive, fixed at ``schedule.max``) over the same simulated experiments."""
    rng = np.random.default_rng(seed)
    tallies = {"adaptive": [0, 0, 0], "fixed": [0, 0, 0]}  # false claims, right claims, trials
    planted = [f"v{i}" for i, e in enumerate(effects) if e != 0.0]
    for _ in range(experiments):
        diffs = arms(rng, effects, sd, schedule.max)
        for kind, outcome in (("adaptive", adaptive(diffs, schedule, rule)),
                              ("fixed", fixed(diffs, schedule.max, rule.alpha))):
            t = tallies[kind]
            t[0] += any(outcome.claims[f"v{i}"] in ("better", "worse")
                        for i, e in enumerate(effects) if e == 0.0)
            t[1] += sum(outcome.claims[f"v{i}"] == ("better" if e > 0 else "worse")
                        for i, e in enumerate(effects) if e != 0.0)
            t[2] += outcome.trials

    def rates(t: list[int]) -> Rates:
        return Rates(experiments, t[0] / experiments,
                     t[1] / (experiments * len(planted)) if planted else math.nan,
                     t[2] / experiments, t[2] / experiments / (len(effects) + 1))

    return rates(tallies["adaptive"]), rates(tallies["fixed"])


def binomial_interval(successes: int, trials: int, confidence: float = 0.95
                      ) -> tuple[float, float]:
    """Clopper-Pearson interval for a rate (scipy)."""
    ci = stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence,
                                                          method="exact")
    return float(ci.low), float(ci.high)
