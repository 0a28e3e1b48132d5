"""The downstream tasks of a comparison: a column block per task, the combined score, and the
Holm family across variants and tasks.

The combined score follows UNITER's Meta-Sum: per trial, the sum over the evaluated tasks of
each task's primary metric. It is added to each trial as one more metric before any statistics,
so it is summarised, paired by seed and tested exactly like every other metric; a trial that
lacks one of the tasks has no Meta-Sum (never a partial sum).
"""

from __future__ import annotations

import math

from service.analysis.multiplicity import family_tests
from service.analysis.schema import Downstream, ExperimentView, TaskBlock, VariantResult

META_SUM = "meta_sum"
"""The combined score's metric name (higher is better)."""


def with_meta_sum(view: ExperimentView) -> ExperimentView:
    """``view`` with the Meta-Sum on every trial that has every task's primary metric, when
    two or more tasks were evaluated; unchanged otherwise."""
    primaries = [view.task_primary[t] for t in view.tasks if t in view.task_primary]
    if len(primaries) < 2 or META_SUM in view.metrics:
        return view
    trials = []
    for t in view.trials:
        values = [t.metrics.get(m, math.nan) for m in primaries]
        if all(math.isfinite(v) for v in values):
            t = t.model_copy(update={"metrics": {**t.metrics, META_SUM: float(sum(values))}})
        trials.append(t)
    return view.model_copy(update={
        "trials": trials, "metrics": [*view.metrics, META_SUM],
        "directions": {**view.directions, META_SUM: "higher"}})


def downstream_section(view: ExperimentView, variants: list[VariantResult],
                       alpha: float) -> Downstream | None:
    """The task blocks and the family (every non-baseline variant x each task's primary
    metric, Holm together); None when the view has no downstream task."""
    blocks = [TaskBlock(task=t, metrics=ms, primary=view.task_primary.get(t, ms[0]))
              for t, ms in view.tasks.items() if ms]
    if not blocks:
        return None
    members = [(b.task, v.vs_baseline.get(b.primary)) for v in variants if not v.is_baseline
               for b in blocks]
    return Downstream(tasks=blocks, meta_sum=META_SUM if META_SUM in view.metrics else None,
                      family=family_tests(members, alpha))


def family_note(section: Downstream, alpha: float) -> str:
    """What the notes state about the family."""
    tasks = ", ".join(f"{b.task} ({b.primary})" for b in section.tasks)
    n = sum(f.p_family is not None for f in section.family)
    text = (f"Downstream family: Holm across variants x tasks' primary metrics [{tasks}], "
            f"{n} tests adjusted together at alpha = {alpha:g} (p family); the per-metric "
            "p corrected in the tables is within one metric only.")
    if section.meta_sum:
        text += (" Meta-Sum (UNITER): per trial, the sum of the tasks' primary metrics, paired "
                 "and corrected like any metric; outside the family.")
    return text
