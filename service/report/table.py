"""Format-neutral ablation table built from an ``Analysis`` (no statistics here).

Markdown, LaTeX and HTML renderers all draw the same ``Table`` so the three stay in
agreement about what is bold, which footnote applies and how numbers are rounded.
Text uses plain unicode (Δ, ±, ↑, †); each renderer translates it for its format.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median

from service.analysis import Analysis, Cell, Comparison, FactorEffect

DAGGER, DDAGGER = "†", "‡"
ARROW = {"higher": "↑", "lower": "↓"}


@dataclass
class TCell:
    """One table cell: ``main`` [± ``pm``] with optional bold and footnote mark."""

    main: str = ""
    pm: str | None = None
    bold: bool = False
    mark: str = ""
    css: str = ""  # hint for HTML (e.g. verdict colour)

    def plain(self, pm: str = "±") -> str:
        """Cell text without markup."""
        text = self.main if self.pm is None else f"{self.main} {pm} {self.pm}"
        return text + self.mark


@dataclass
class Column:
    title: str
    align: str = "r"  # "l" or "r"
    arrow: str = ""  # ↑ / ↓ for metric columns


@dataclass
class Table:
    caption: str
    columns: list[Column]
    rows: list[list[TCell]]
    footnotes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ number format


def decimals_for(values: Sequence[float | None]) -> int:
    """Decimals so that typical values keep ~3 significant digits (min 2, max 6)."""
    mags = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not mags:
        return 2
    mag = math.floor(math.log10(median(mags)))
    return min(6, max(2, 2 - mag))


def fmt_num(x: float | None, d: int, sign: bool = False) -> str:
    """Fixed decimals; '—' for missing; unicode minus is avoided for CSV/LaTeX safety."""
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:+.{d}f}" if sign else f"{x:.{d}f}"


def fmt_p(p: float | None) -> str:
    """p value as papers print it."""
    if p is None or not math.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def metric_decimals(a: Analysis) -> dict[str, int]:
    """Per-metric decimals from the variants' means."""
    return {
        m: decimals_for([v.cells[m].mean for v in a.variants if m in v.cells]) for m in a.metrics
    }


# ------------------------------------------------------------------------ cells


def metric_cell(cell: Cell | None, d: int, bold: bool, n_done: int) -> TCell:
    """mean ± CI half-width; † single seed; ‡ ± std when no interval exists."""
    if cell is None or cell.mean is None:
        return TCell("—")
    out = TCell(fmt_num(cell.mean, d), bold=bold)
    if cell.ci is not None:
        out.pm = fmt_num((cell.ci.high - cell.ci.low) / 2, d)
    elif cell.std is not None:
        out.pm, out.mark = fmt_num(cell.std, d), DDAGGER
    else:
        out.mark = DAGGER
    if cell.n != n_done:
        out.mark += f" (n={cell.n})"
    return out


def delta_cell(cmp: Comparison | None, d: int) -> TCell:
    """+delta [low, high]."""
    if cmp is None or cmp.delta is None:
        return TCell("—")
    text = fmt_num(cmp.delta, d, sign=True)
    if cmp.ci is not None:
        text += f" [{fmt_num(cmp.ci.low, d, sign=True)}, {fmt_num(cmp.ci.high, d, sign=True)}]"
    return TCell(text)


def verdict_cell(cmp: Comparison | None) -> TCell:
    if cmp is None:
        return TCell("")
    return TCell(cmp.verdict, css=cmp.verdict.split()[0])


def seeds_cell(n_done: int, n_unfinished: int) -> TCell:
    return TCell(f"{n_done}" + (f" (+{n_unfinished} unfinished)" if n_unfinished else ""))


# ------------------------------------------------------------------------- table


def build_table(a: Analysis) -> Table:
    """The paper-style ablation table: metrics block plus primary-metric deltas."""
    dec = metric_decimals(a)
    prim = a.primary_metric
    prev = a.design == "add_one_in"
    cols = [Column("Variant", "l"), Column("Seeds")]
    shown = main_metrics(a)
    cols += [Column(m, arrow=ARROW[a.directions[m]]) for m in shown]
    cols += [
        Column(f"Δ {prim} vs {a.baseline}"),
        Column(f"p ({a.correction})"),
        Column("Verdict", "l"),
    ]
    if prev:
        cols += [
            Column(f"Δ {prim} vs prev"),
            Column(f"p prev ({a.correction})"),
            Column("Verdict prev", "l"),
        ]
    rows: list[list[TCell]] = []
    for v in a.variants:
        row = [TCell(v.name, bold=False), seeds_cell(v.n_done, v.n_unfinished)]
        for m in shown:
            row.append(metric_cell(v.cells.get(m), dec[m], v.name in a.best.get(m, []), v.n_done))
        if v.is_baseline:
            row += [TCell("(baseline)"), TCell(""), TCell("")]
        else:
            cmp = v.vs_baseline.get(prim)
            row += [
                delta_cell(cmp, dec[prim]),
                TCell(fmt_p(None if cmp is None else cmp.p_corrected)),
                verdict_cell(cmp),
            ]
        if prev:
            cmp = v.vs_previous.get(prim)
            row += [
                delta_cell(cmp, dec[prim]),
                TCell(fmt_p(cmp.p_corrected) if cmp else ""),
                verdict_cell(cmp),
            ]
        rows.append(row)
    return Table(
        caption=f"Ablation: {a.experiment}", columns=cols, rows=rows, footnotes=footnotes(a, rows)
    )


def main_metrics(a: Analysis) -> list[str]:
    """The main table's metric columns: all but the downstream tasks' (their own table has a
    block per task), the primary metric always."""
    if a.downstream is None:
        return list(a.metrics)
    blocks = {m for b in a.downstream.tasks for m in b.metrics} | {a.downstream.meta_sum}
    return [m for m in a.metrics if m == a.primary_metric or m not in blocks]


def footnotes(a: Analysis, rows: list[list[TCell]]) -> list[str]:
    """What a reader needs to interpret the numbers."""
    level = f"{a.confidence:.0%}"
    ns = sorted({c.n for v in a.variants for c in v.cells.values() if c.n})
    n_text = (
        "no finished seeds yet"
        if not ns
        else (f"n = {ns[0]} seeds" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]} seeds (see Seeds)")
    )
    if a.ci_method == "bootstrap":
        ci = f"± half-width of the {level} bootstrap ({a.bootstrap_method}, {a.n_boot} resamples) "
        ci += "interval, which may be asymmetric (exact bounds in CSV/JSON)"
    else:
        ci = f"± half-width of the {level} t confidence interval"
    notes = [
        f"Mean over {n_text}; {ci}. Bold: best per metric (↑ higher / ↓ lower is better).",
        f"Δ = variant − {a.baseline} [{level} CI]; paired t-test when seeds match and their "
        "trials shared data order, initial weights and random streams, else Welch; "
        f"p corrected with {a.correction} across variants per metric; "
        f"verdict at α = {a.alpha:g} on corrected p.",
    ]
    if a.design == "add_one_in":
        notes.append("Δ prev: each row vs the row above (own correction family).")
    for v in a.variants:
        cmp = v.vs_baseline.get(a.primary_metric)
        if cmp is not None and cmp.pairing and cmp.pairing.startswith("broken"):
            notes.append(f"{v.name} vs {cmp.reference}: pairing {cmp.pairing}.")
    marks = "".join(c.mark for row in rows for c in row)
    if DAGGER in marks:
        notes.append(f"{DAGGER} single seed: no interval possible.")
    if DDAGGER in marks:
        notes.append(f"{DDAGGER} ± is the std over seeds (no interval available).")
    if "(n=" in marks:
        notes.append("(n=k): fewer seeds reported this metric than finished.")
    return notes


def build_factor_table(a: Analysis, metric: str | None = None) -> Table | None:
    """Main effects and interactions of a factorial design for one metric."""
    metric = metric or a.primary_metric
    effects = [e for e in a.factor_effects if e.metric == metric]
    if not effects:
        return None
    d = metric_decimals(a).get(metric, 2)
    cols = [
        Column("Term", "l"),
        Column("Contrast", "l"),
        Column(f"Estimate [{a.confidence:.0%} CI]"),
        Column("F (df)"),
        Column("p"),
        Column("partial η²"),
    ]
    rows = [_effect_row(e, d) for e in effects]
    return Table(
        caption=f"Factor effects on {metric} (OLS, type-2 ANOVA)",
        columns=cols,
        rows=rows,
        footnotes=[
            "Two-level factors coded ±½: a main effect is the difference of level means "
            "averaged over the other factors; an interaction is a difference of differences. "
            "p values are not corrected for multiplicity."
        ],
    )


def _effect_row(e: FactorEffect, d: int) -> list[TCell]:
    est = "—" if e.estimate is None else fmt_num(e.estimate, d, sign=True)
    if e.ci is not None:
        est += f" [{fmt_num(e.ci.low, d, sign=True)}, {fmt_num(e.ci.high, d, sign=True)}]"
    f_text = "—" if e.F is None else f"{e.F:.2f} ({e.df_num:g}, {e.df_den:g})"
    eta = "—" if e.partial_eta_sq is None else f"{e.partial_eta_sq:.2f}"
    return [
        TCell(e.term),
        TCell(e.contrast or (e.note or "")),
        TCell(est),
        TCell(f_text),
        TCell(fmt_p(e.p)),
        TCell(eta),
    ]
