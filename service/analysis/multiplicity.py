"""A declared multiplicity family across downstream tasks: Holm over variants x tasks' primary
metrics.

Each task adds a chance of a false "better"; corrected within each metric alone (as the table
is), five tasks and four variants give twenty tests at level alpha each. The family here is
every (variant vs baseline, task primary metric) test of the comparison, adjusted together by
Holm's step-down procedure (strong control of the family-wise error rate, no assumption about
how the tasks' tests depend on each other).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from service.analysis.pairwise import holm
from service.analysis.schema import Comparison, FamilyTest


def family_tests(members: Sequence[tuple[str, Comparison | None]], alpha: float
                 ) -> list[FamilyTest]:
    """(task, comparison) in the family's order -> the tests with their family-adjusted p.
    A member without a finite p (too few seeds) stays in the list, out of the family."""
    ps = [c.p if c is not None and c.p is not None and math.isfinite(c.p) else None
          for _, c in members]
    tested = [i for i, p in enumerate(ps) if p is not None]
    adjusted = holm(np.array([ps[i] for i in tested], dtype=float)) if tested else np.array([])
    p_family: dict[int, float] = {i: float(a) for i, a in zip(tested, adjusted, strict=True)}
    out = []
    for i, (task, c) in enumerate(members):
        if c is None:
            continue
        adj = p_family.get(i)
        verdict = "insufficient data"
        if adj is not None:
            good = c.delta is not None and (c.delta > 0 if c.direction == "higher"
                                            else c.delta < 0)
            verdict = ("better" if good else "worse") if adj < alpha else \
                "no detectable difference"
        out.append(FamilyTest(variant=c.variant, task=task, metric=c.metric, delta=c.delta,
                              p=ps[i], p_family=adj, verdict=verdict))
    return out
