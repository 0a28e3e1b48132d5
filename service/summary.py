"""The first ``/compare``: mean +- sample std per variant per metric over its done seeds.

Deliberately small and descriptive (no intervals, no tests); the proper statistics live in
``service.analysis`` and replace this where wired. Pure: numbers in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass
class MetricSummary:
    mean: float | None
    std: float | None
    """Sample standard deviation (n-1); None with fewer than two seeds."""
    n: int


@dataclass
class VariantSummary:
    name: str
    levels: dict[str, str]
    seeds: list[int]
    metrics: dict[str, MetricSummary] = field(default_factory=dict)


def summarize_values(values: list[float]) -> MetricSummary:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return MetricSummary(None, None, 0)
    mean = sum(finite) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else None
    return MetricSummary(mean, std, n)


def summarize(
    variants: Iterable[tuple[str, Mapping[str, str], list[tuple[int, Mapping[str, float]]]]],
    metrics: list[str],
) -> list[VariantSummary]:
    """``variants``: (name, levels, [(seed, metrics)]) over done trials only."""
    out = []
    for name, levels, runs in variants:
        vs = VariantSummary(name=name, levels=dict(levels), seeds=sorted(s for s, _ in runs))
        for metric in metrics:
            vs.metrics[metric] = summarize_values(
                [float(m[metric]) for _, m in runs if metric in m]
            )
        out.append(vs)
    return out


def _fmt(ms: MetricSummary) -> str:
    if ms.mean is None:
        return "-"
    if ms.std is None:
        return f"{ms.mean:.2f}"
    return f"{ms.mean:.2f} ± {ms.std:.2f}"


def to_markdown(summaries: list[VariantSummary], metrics: list[str], baseline: str | None = None
                ) -> str:
    """A Markdown table, one row per variant (the baseline marked with *)."""
    head = "| variant | seeds | " + " | ".join(metrics) + " |"
    rule = "|---|---:|" + "---:|" * len(metrics)
    rows = [head, rule]
    for vs in summaries:
        name = f"{vs.name} *" if vs.name == baseline else vs.name
        cells = " | ".join(_fmt(vs.metrics[m]) for m in metrics)
        rows.append(f"| {name} | {len(vs.seeds)} | {cells} |")
    return "\n".join(rows) + "\n"
