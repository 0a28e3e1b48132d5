"""The adaptive-seeds table of a comparison: per variant, the decision of the group-sequential
procedure, the seeds and looks it took, its repeated CI, and why (or what it would need)."""

from __future__ import annotations

from service.analysis import Analysis
from service.report.table import Column, Table, TCell

_VERDICT_CSS = {"better": "better", "worse": "worse"}


def sequential_caption(a: Analysis) -> str:
    s = a.sequential
    assert s is not None
    margin = f", futility margin ±{s.min_effect:g}" if s.min_effect is not None else ""
    return (f"Adaptive seeds: {s.initial} to {s.max} (step {s.step}), {s.looks_taken} of "
            f"{len(s.planned_looks)} looks taken; {s.spending} spending, family-wise α = "
            f"{s.alpha:g}{margin}")


def sequential_table(a: Analysis) -> Table:
    s = a.sequential
    assert s is not None
    rows = []
    for c in s.comparisons:
        lo, hi = c.interval
        interval = "–" if lo is None or hi is None else f"[{lo:+.2f}, {hi:+.2f}]"
        needed = f"; ~{c.seeds_needed} seeds would decide it" if c.seeds_needed else ""
        rows.append([
            TCell(c.variant), TCell(c.decision.replace("_", " "), css=_VERDICT_CSS.get(
                c.decision, "")),
            TCell(str(c.seeds)), TCell(str(c.looks_taken)), TCell(interval),
            TCell(f"{c.level:.4g}"), TCell(c.reason + needed),
        ])
    columns = [Column("variant", "l"), Column("decision", "l"), Column("seeds"),
               Column("looks"), Column(f"Δ {a.primary_metric} (repeated CI)"),
               Column("level"), Column("why", "l")]
    return Table(caption=sequential_caption(a), columns=columns, rows=rows, footnotes=[
        "Repeated CIs hold at every look at once, so they stay valid when a comparison stops "
        "early; the fixed-design p values in the table above do not."])

