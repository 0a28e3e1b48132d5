"""Learning curves: each variant's metric summarised over seeds per step."""

from __future__ import annotations

import numpy as np

from service.analysis.schema import Curve, ExperimentView
from service.analysis.summaries import json_float


def learning_curves(view: ExperimentView, metric: str) -> list[Curve]:
    """Mean/std per step over seeds (done or still running) for each variant."""
    points: dict[str, list[list[tuple[int, float]]]] = {}
    for t in view.trials:
        h = t.history.get(metric)
        if h:
            points.setdefault(t.variant, []).append(h)
    out: list[Curve] = []
    for v in view.variants:
        runs = points.get(v.name)
        if not runs:
            continue
        arr = np.array([p for run in runs for p in run], dtype=float).reshape(-1, 2)
        arr = arr[np.isfinite(arr[:, 1])]
        if not len(arr):
            continue
        steps, inv = np.unique(arr[:, 0].astype(int), return_inverse=True)
        n = np.bincount(inv)
        s1 = np.bincount(inv, weights=arr[:, 1])
        mean = s1 / n
        ss = np.bincount(inv, weights=(arr[:, 1] - mean[inv]) ** 2)
        with np.errstate(all="ignore"):
            std = np.where(n >= 2, np.sqrt(ss / (n - 1)), np.nan)
        out.append(
            Curve(
                variant=v.name,
                metric=metric,
                steps=steps.tolist(),
                mean=mean.tolist(),
                std=[json_float(s) for s in std],
                n=n.tolist(),
            )
        )
    return out

