"""Calibration of adaptive seeds: the A/A false-claim rate and, on planted effects, power and
mean seeds per arm, adaptive against the fixed design at ``max`` seeds, over the same simulated
experiments (``service.analysis.calibration``).

    python bench/calibration.py [--aa 4000] [--power 1000] [--initial 3 --max 10 --step 1]
                                [--futility 0.1]

Differences are in units of their own spread (sd 1). Nothing here was tuned after seeing the
results: the schedule (3 to 10, step 1), alpha 0.05 and the effect sizes were fixed first.
"""

from __future__ import annotations

import argparse
import time

from service.analysis.boundaries import Spending
from service.analysis.calibration import binomial_interval, simulate
from service.analysis.sequential import Schedule, StoppingRule

SPENDINGS: tuple[Spending, ...] = ("obrien_fleming", "pocock")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--aa", type=int, default=4000, help="A/A experiments per row")
    parser.add_argument("--power", type=int, default=1000, help="experiments per effect")
    parser.add_argument("--initial", type=int, default=3)
    parser.add_argument("--max", type=int, default=10)
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--futility", type=float, default=None,
                        help="conditional-power futility threshold (e.g. 0.1); default off")
    args = parser.parse_args()
    schedule = Schedule(args.initial, args.max, args.step)
    futility = args.futility

    def rule(spending: Spending = "obrien_fleming") -> StoppingRule:
        return StoppingRule(spending=spending, futility=futility)
    print(f"looks at {schedule.looks()} seeds, alpha 0.05, sd of a difference 1, "
          f"futility {futility}\n")

    print("A/A: share of experiments with any claim (all variants equal to the baseline)")
    print("| variants | spending | adaptive (95% CI) | seeds/arm | fixed (95% CI) |")
    print("|--:|:--|:--|--:|:--|")
    for m in (1, 3):
        for spending in SPENDINGS:
            t0 = time.monotonic()
            a, f = simulate([0.0] * m, 1.0, schedule, rule(spending),
                            args.aa, seed=args.seed)
            ca = binomial_interval(round(a.any_false_claim * args.aa), args.aa)
            cf = binomial_interval(round(f.any_false_claim * args.aa), args.aa)
            print(f"| {m} | {spending} | {a.any_false_claim:.4f} [{ca[0]:.4f}, {ca[1]:.4f}] "
                  f"| {a.mean_seeds_per_arm:.2f} | {f.any_false_claim:.4f} "
                  f"[{cf[0]:.4f}, {cf[1]:.4f}] | ({time.monotonic() - t0:.0f} s)")

    print("\nPlanted effect on one of three variants (the others null): power and seeds/arm")
    print("| effect (sd) | spending | adaptive power | adaptive seeds/arm | fixed power "
          "| fixed seeds/arm | trials saved |")
    print("|--:|:--|--:|--:|--:|--:|--:|")
    for effect in (0.5, 1.0, 1.5, 2.0, 3.0):
        for spending in SPENDINGS:
            a, f = simulate([effect, 0.0, 0.0], 1.0, schedule,
                            rule(spending), args.power, seed=args.seed + 1)
            print(f"| {effect:g} | {spending} | {a.power:.3f} | {a.mean_seeds_per_arm:.2f} | "
                  f"{f.power:.3f} | {f.mean_seeds_per_arm:.0f} | "
                  f"{1 - a.mean_trials / f.mean_trials:.0%} |")

    print("\nOne variant with the effect (a single comparison): power and seeds/arm")
    print("| effect (sd) | adaptive power | adaptive seeds/arm | fixed power | trials saved |")
    print("|--:|--:|--:|--:|--:|")
    for effect in (0.5, 1.0, 1.5, 2.0, 3.0):
        a, f = simulate([effect], 1.0, schedule, rule(), args.power, seed=args.seed + 2)
        print(f"| {effect:g} | {a.power:.3f} | {a.mean_seeds_per_arm:.2f} | {f.power:.3f} | "
              f"{1 - a.mean_trials / f.mean_trials:.0%} |")


if __name__ == "__main__":
    main()
