"""Adaptive seeds in a stored experiment: which look it is at, what each comparison decided,
and the seeds the next look adds.

Everything is derived from the store (never from memory): the look is the last one whose seeds
every comparison still active at it has finished, and ``service.analysis.sequential.decide``
replays the looks up to there. So a controller restart, a lost job or a second job asks the
same question and gets the same answer, and the next look's seeds are added by
``Store.add_trials``, which never inserts a seed twice.

A comparison is a variant against the baseline on the primary metric, paired by seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.analysis.schema import (
    Sequential,
    SequentialComparison,
    SequentialLook,
    metric_direction,
)
from service.analysis.sequential import SequentialResult, decide, with_seeds_needed
from service.specs import RunOptions
from service.specs.adaptive import AdaptiveSeeds, Stopping
from service.states import RESULT_STATES
from service.store import ExperimentView, NewTrial, Store
from trainer.config import TrainConfig  # torch-free
from trainer.keys import trial_key


@dataclass(frozen=True)
class LookState:
    looks_taken: int
    """Looks whose results are all in (0: the initial seeds are still running)."""
    results: dict[str, SequentialResult]
    """Per comparison (variant name), after the last look taken."""
    next_seeds: dict[str, list[int]]
    """Variant -> seeds the next look adds (empty when every comparison is decided, the last
    look is taken, or a trial of the current look did not produce a result)."""
    planned_looks: tuple[int, ...]
    adaptive: AdaptiveSeeds
    stopping: Stopping


def results_by_seed(exp: ExperimentView, metric: str) -> dict[str, dict[int, float]]:
    """Variant -> seed -> the metric of its done (finished or cached) trial."""
    out: dict[str, dict[int, float]] = {v.name: {} for v in exp.variants}
    for v in exp.variants:
        for t in v.trials:
            value = t.metrics.get(metric)
            if t.state in RESULT_STATES and isinstance(value, int | float):
                out[v.name][t.seed] = float(value)
    return out


def paired_differences(exp: ExperimentView, metric: str) -> dict[str, np.ndarray]:
    """Variant -> (variant - baseline) for seeds 0, 1, 2, ... while both have a result: a
    look at n seeds needs the first n."""
    by_seed = results_by_seed(exp, metric)
    base = by_seed[exp.baseline]
    out = {}
    for name, values in by_seed.items():
        if name == exp.baseline:
            continue
        diffs = []
        seed = 0
        while seed in values and seed in base:
            diffs.append(values[seed] - base[seed])
            seed += 1
        out[name] = np.asarray(diffs)
    return out


def look_state(exp: ExperimentView) -> LookState | None:
    """Where an adaptive experiment stands; None for a fixed design."""
    options = RunOptions.model_validate(exp.spec)
    adaptive = options.adaptive
    if adaptive is None:
        return None
    schedule = adaptive.schedule()
    planned = schedule.looks()
    stopping = options.stopping or Stopping()
    metric = exp.primary_metric
    rule = stopping.rule(higher_is_better=metric_direction(metric) == "higher")
    diffs = paired_differences(exp, metric)
    taken, results = 0, {}
    for k in range(1, len(planned) + 1):
        try:
            results = decide(diffs, schedule, rule, k)
        except ValueError:  # a comparison active at look k lacks its seeds: look k not taken
            break
        taken = k
        if all(r.decision != "continue" for r in results.values()):
            break  # nothing is looked at after the last comparison is decided
    if taken == 0:
        return LookState(0, {}, {}, planned, adaptive, stopping)
    with_seeds_needed(results)
    going_on = [name for name, r in results.items() if r.decision == "continue"]
    next_seeds: dict[str, list[int]] = {}
    if going_on and taken < len(planned) and _current_look_complete(exp, going_on):
        have = {v.name: {t.seed for t in v.trials} for v in exp.variants}
        for arm in [exp.baseline, *going_on]:
            missing = [s for s in range(planned[taken]) if s not in have[arm]]
            if missing:
                next_seeds[arm] = missing
    return LookState(taken, results, next_seeds, planned, adaptive, stopping)


def _current_look_complete(exp: ExperimentView, arms: list[str]) -> bool:
    """No trial of these arms or the baseline is still to run or failed: the next look only
    follows a look whose every trial produced a result."""
    wanted = {exp.baseline, *arms}
    return all(t.state in RESULT_STATES for v in exp.variants if v.name in wanted
               for t in v.trials)


def add_next_look(store: Store, exp_id: str) -> int:
    """Add the next look's seeds of an adaptive experiment, if it has one due (not for a
    cancelled experiment); returns how many trials were added. Idempotent."""
    exp = store.get_experiment(exp_id)
    state = look_state(exp)
    if state is None or not state.next_seeds or exp.cancelled_at is not None:
        return 0
    configs = {v.name: TrainConfig.model_validate(v.config) for v in exp.variants}
    wanted = {arm: [NewTrial(seed=s, trial_key=trial_key(configs[arm], s)) for s in seeds]
              for arm, seeds in state.next_seeds.items()}
    reuse = not RunOptions.model_validate(exp.spec).rerun
    return store.add_trials(exp_id, wanted, reuse_cached=reuse)


def sequential_section(exp: ExperimentView) -> Sequential | None:
    """What /compare shows of an adaptive experiment: per comparison, the looks taken, the
    seeds used, the bound, the decision and why; None for a fixed design."""
    state = look_state(exp)
    if state is None:
        return None
    adaptive, stopping = state.adaptive, state.stopping
    comparisons = []
    for name in [v.name for v in exp.variants if v.name in state.results]:
        r = state.results[name]
        lo, hi = r.interval
        comparisons.append(SequentialComparison(
            variant=name, decision=r.decision, reason=r.reason, seeds=r.seeds,
            looks_taken=len(r.looks), level=r.level, spending=stopping.method,
            bound=_finite(r.looks[-1].bound), interval=(_finite(lo), _finite(hi)),
            seeds_needed=r.seeds_needed,
            looks=[SequentialLook(seeds=k.seeds, delta=k.delta, se=k.se, t=_finite(k.t),
                                  bound=_finite(k.bound)) for k in r.looks]))
    return Sequential(initial=adaptive.initial, max=adaptive.max, step=adaptive.step,
                      alpha=stopping.alpha, spending=stopping.method,
                      min_effect=stopping.min_effect, planned_looks=list(state.planned_looks),
                      looks_taken=state.looks_taken, comparisons=comparisons)


def _finite(x: float) -> float:
    """JSON has no infinity: a t of inf (every seed the same non-zero difference) is capped."""
    return max(-1e300, min(1e300, float(x)))
