"""Power before running: how many seeds a planned experiment needs to detect a difference.

``POST /experiments?dry_run=true&delta=D`` with ``sd=S`` (the spread of a variant - baseline
difference across seeds, in the primary metric's units) or ``prior=<experiment id>`` (the
spread observed there) answers the seeds per arm with which a paired t test detects D with the
wanted power, at the level each comparison gets in the worst case of the correction (alpha over
the number of comparisons: Holm starts there). Planning stays conservative: a group-sequential
design with a few looks needs a little more at ``max`` than this fixed-design count.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel

from service.analysis.sequential import POWER, seeds_for_power
from service.job.looks import paired_differences
from service.specs import AblationSpec
from service.store import ExperimentView


class PowerPlan(BaseModel):
    delta: float
    sd: float
    sd_source: str
    """``stated``, or the prior experiment and how many paired differences gave the spread."""
    comparisons: int
    level: float
    power: float
    seeds_per_arm: int | None
    """None when the difference is too small to detect with any sensible number of seeds."""
    note: str


class PowerError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def pooled_sd(prior: ExperimentView) -> tuple[float, int]:
    """The spread of paired differences (variant - baseline, primary metric) in a finished
    experiment, pooled over its comparisons (each weighted by its degrees of freedom)."""
    squares, dof = 0.0, 0
    for diffs in paired_differences(prior, prior.primary_metric).values():
        if len(diffs) >= 2:
            squares += float(np.var(diffs, ddof=1)) * (len(diffs) - 1)
            dof += len(diffs) - 1
    if dof == 0:
        raise PowerError("prior", f"experiment {prior.id} has no comparison with two paired "
                         "seeds done: no spread to plan from")
    return math.sqrt(squares / dof), dof


def plan_power(spec: AblationSpec, variants: int, delta: float, sd: float | None,
               prior: ExperimentView | None, power: float = POWER) -> PowerPlan:
    if not (math.isfinite(delta) and delta > 0):
        raise PowerError("delta", "the difference to detect must be a positive number")
    if sd is None and prior is None:
        raise PowerError("sd", "give the spread of a difference (sd) or a prior experiment")
    if sd is not None:
        if not (math.isfinite(sd) and sd > 0):
            raise PowerError("sd", "the spread must be a positive number")
        source = "stated"
    else:
        assert prior is not None
        if prior.primary_metric != spec.metrics.primary:
            raise PowerError("prior", f"experiment {prior.id} measured "
                             f"{prior.primary_metric!r}, this spec {spec.metrics.primary!r}")
        sd, dof = pooled_sd(prior)
        source = f"experiment {prior.id} ({dof} degrees of freedom)"
    alpha = spec.stopping.alpha if spec.stopping is not None else 0.05
    comparisons = max(1, variants - 1)
    level = alpha / comparisons
    seeds = seeds_for_power(delta, sd, level, power)
    note = (f"a paired t test at level {alpha:g}/{comparisons} detects {delta:g} with power "
            f"{power:g} given a spread of {sd:.3g}")
    if spec.adaptive is not None and seeds is not None and seeds > spec.adaptive.max:
        note += f"; seeds.max ({spec.adaptive.max}) is below the {seeds} this needs"
    return PowerPlan(delta=delta, sd=sd, sd_source=source, comparisons=comparisons, level=level,
                     power=power, seeds_per_arm=seeds, note=note)
