"""The downstream section of a comparison: one column block per task (its metrics, then the
primary metric's delta and its p Holm-adjusted across the whole family), then the Meta-Sum.

Rendering only: the numbers are ``Analysis.downstream`` and the variants' cells."""

from __future__ import annotations

from service.analysis import Analysis
from service.report.table import (
    ARROW,
    Column,
    Table,
    TCell,
    delta_cell,
    fmt_p,
    metric_cell,
    metric_decimals,
)


def downstream_table(a: Analysis) -> Table | None:
    """Variants x (task blocks, Meta-Sum); None without downstream tasks."""
    d = a.downstream
    if d is None:
        return None
    dec = metric_decimals(a)
    family = {(f.variant, f.task): f for f in d.family}
    cols = [Column("Variant", "l")]
    for b in d.tasks:
        cols += [Column(f"{b.task}: {m}", arrow=ARROW[a.directions[m]]) for m in b.metrics]
        cols += [Column(f"{b.task}: Δ {b.primary}"), Column(f"{b.task}: p (Holm, family)")]
    if d.meta_sum:
        cols += [Column("Meta-Sum", arrow="↑"), Column("Meta-Sum: Δ"),
                 Column(f"Meta-Sum: p ({a.correction})")]
    rows: list[list[TCell]] = []
    for v in a.variants:
        row = [TCell(v.name)]
        for b in d.tasks:
            row += [metric_cell(v.cells.get(m), dec[m], v.name in a.best.get(m, []), v.n_done)
                    for m in b.metrics]
            if v.is_baseline:
                row += [TCell("(baseline)"), TCell("")]
                continue
            f = family.get((v.name, b.task))
            row += [delta_cell(v.vs_baseline.get(b.primary), dec[b.primary]),
                    TCell(fmt_p(f.p_family if f else None),
                          css=f.verdict.split()[0] if f else "")]
        if d.meta_sum:
            m = d.meta_sum
            row.append(metric_cell(v.cells.get(m), dec[m], v.name in a.best.get(m, []),
                                   v.n_done))
            cmp = None if v.is_baseline else v.vs_baseline.get(m)
            row += [TCell("(baseline)") if v.is_baseline else delta_cell(cmp, dec[m]),
                    TCell(fmt_p(cmp.p_corrected if cmp else None))]
        rows.append(row)
    n = sum(f.p_family is not None for f in d.family)
    notes = [f"One block per task; Δ = variant − {a.baseline} on the task's primary metric "
             f"(paired by seed where verified). p (Holm, family): adjusted together over the "
             f"{n} tests of variants × tasks' primary metrics."]
    if d.meta_sum:
        notes.append("Meta-Sum: per trial, the sum of the tasks' primary metrics "
                     f"({', '.join(b.primary for b in d.tasks)}), as UNITER's Meta-Sum.")
    return Table(caption=f"Downstream tasks: {a.experiment}", columns=cols, rows=rows,
                 footnotes=notes)
