"""The adaptive-seed plan a dry run shows: how far an experiment may grow and when it stops.

A spec with ``seeds: {initial, max, step}`` runs a number of trials that depends on what the
looks find, so "trials: 6" alone says nothing. The plan lists the looks (seeds per arm at each),
the stopping rule, the trials at the first look and at most, and, when the caller states the
difference to detect (``delta``) and its spread (``sd``, or a prior experiment's), the expected
number of trials under no effect and under that effect, from the same simulated experiments
that ``service.analysis.calibration`` measures the procedure with.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from service.analysis.calibration import simulate
from service.analysis.schema import metric_direction
from service.analysis.sequential import Schedule, StoppingRule
from service.specs import AblationSpec
from service.specs.adaptive import AdaptiveSeeds, Stopping

SIMULATED_COMPARISONS = 800
"""Simulated experiments x comparisons per scenario: the time of a dry run grows with their
product, so many arms get fewer experiments (at least MIN_EXPERIMENTS, at most MAX_EXPERIMENTS);
about a second for 2 to 8 arms on one core."""
MIN_EXPERIMENTS, MAX_EXPERIMENTS = 50, 400
SIMULATION_SEED = 0
"""Fixed, so the same spec and figures always show the same expectation."""


class StoppingOut(BaseModel):
    alpha: float = Field(description="family-wise error over every look and comparison")
    spending: Literal["obrien_fleming", "pocock"]
    min_effect: float | None = Field(description="a repeated CI inside +-min_effect stops a "
                                     "comparison as 'no effect'; None: only effects stop early")
    futility: float | None = Field(description="conditional-power threshold under which a "
                                   "comparison stops as 'futile'; None: runs to max")
    higher_is_better: bool


class Scenario(BaseModel):
    effect: float = Field(description="every variant's true difference from the baseline, in "
                          "the better direction")
    expected_trials: float = Field(description="mean trials run over the simulated experiments")
    expected_seeds_per_arm: float
    claims_rate: float = Field(description="under no effect: the share of experiments with a "
                               "false better/worse claim; under the effect: the share of "
                               "comparisons claimed in the right direction (power)")


class ExpectedTrials(BaseModel):
    delta: float
    sd: float
    sd_source: str
    simulated_experiments: int
    under_no_effect: Scenario
    under_effect: Scenario
    fixed_design_trials: int = Field(description="every arm at max seeds, for comparison")


class AdaptivePlan(BaseModel):
    initial: int
    step: int
    max: int
    looks: list[int] = Field(description="seeds per arm at each planned look")
    stopping: StoppingOut
    arms: int = Field(description="the baseline and every variant")
    comparisons: int = Field(description="variant - baseline comparisons the looks decide")
    trials_first_look: int = Field(description="every arm at its initial seeds")
    trials_at_most: int = Field(description="every arm at max seeds")
    expected: ExpectedTrials | None = Field(
        default=None, description="with delta and sd (or prior): the expected trials under no "
        "effect and under delta, simulated as the calibration does")
    note: str


def plan_adaptive(spec: AblationSpec, arms: int, delta: float | None = None,
                  sd: float | None = None, sd_source: str = "stated") -> AdaptivePlan | None:
    """The plan of an adaptive spec (None for fixed seeds); expectations only with delta and
    sd, both already checked positive and finite by the caller."""
    seeds: AdaptiveSeeds | None = spec.adaptive
    if seeds is None:
        return None
    higher_is_better = metric_direction(spec.metrics.primary) == "higher"
    stopping = spec.stopping if spec.stopping is not None else Stopping()
    schedule = seeds.schedule()
    looks = list(schedule.looks())
    comparisons = max(1, arms - 1)
    expected = None
    if delta is not None and sd is not None:
        # simulated with higher-is-better: the trials spent do not depend on the direction
        expected = _expected(comparisons, delta, sd, sd_source, schedule,
                             stopping.rule(higher_is_better=True), arms)
    note = (f"every arm runs {seeds.initial} seeds first; after each look the baseline and the "
            f"undecided variants get {seeds.step} more, up to {seeds.max} "
            f"({len(looks)} looks); alpha {stopping.alpha:g} spent by {stopping.method}")
    if stopping.min_effect is None and stopping.futility is None:
        note += "; only an effect stops a comparison early (no min_effect, no futility)"
    return AdaptivePlan(
        initial=seeds.initial, step=seeds.step, max=seeds.max, looks=looks,
        stopping=StoppingOut(alpha=stopping.alpha, spending=stopping.method,
                             min_effect=stopping.min_effect, futility=stopping.futility,
                             higher_is_better=higher_is_better),
        arms=arms, comparisons=comparisons, trials_first_look=arms * seeds.initial,
        trials_at_most=arms * seeds.max, expected=expected, note=note)


def _expected(comparisons: int, delta: float, sd: float, sd_source: str, schedule: Schedule,
              rule: StoppingRule, arms: int) -> ExpectedTrials:
    experiments = min(MAX_EXPERIMENTS,
                      max(MIN_EXPERIMENTS, SIMULATED_COMPARISONS // comparisons))
    null, _ = simulate([0.0] * comparisons, sd, schedule, rule, experiments,
                       seed=SIMULATION_SEED)
    planted, _ = simulate([delta] * comparisons, sd, schedule, rule, experiments,
                          seed=SIMULATION_SEED)
    return ExpectedTrials(
        delta=delta, sd=sd, sd_source=sd_source, simulated_experiments=experiments,
        under_no_effect=Scenario(effect=0.0, expected_trials=null.mean_trials,
                                 expected_seeds_per_arm=null.mean_seeds_per_arm,
                                 claims_rate=null.any_false_claim),
        under_effect=Scenario(effect=delta, expected_trials=planted.mean_trials,
                              expected_seeds_per_arm=planted.mean_seeds_per_arm,
                              claims_rate=0.0 if math.isnan(planted.power) else planted.power),
        fixed_design_trials=arms * schedule.max)
