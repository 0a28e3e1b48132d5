"""Render an ``Analysis`` as JSON, Markdown, CSV, LaTeX, HTML or PNG.

Rendering only: every number comes from ``service.analysis``. The table layout lives in
``service.report.table`` and the plots in ``service.report.figures`` so HTML pages and
MLflow artifacts reuse them (``render_figures``).
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable

from service.analysis import Analysis
from service.report import figures
from service.report.cost import cost_table
from service.report.downstream import downstream_table
from service.report.figures import render_summary_png
from service.report.sequential import sequential_caption, sequential_table
from service.report.table import Table, TCell, build_factor_table, build_table

__all__ = ["FORMATS", "MEDIA_TYPES", "render", "render_figures"]

MEDIA_TYPES = {
    "json": "application/json",
    "markdown": "text/markdown; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "latex": "application/x-latex; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "png": "image/png",
}
FORMATS = tuple(MEDIA_TYPES)
_ALIASES = {"md": "markdown", "tex": "latex", "htm": "html"}


def render(analysis: Analysis | dict, fmt: str) -> tuple[bytes, str]:
    """(content, media type) for ``fmt`` in json | markdown | csv | latex | html | png.

    Accepts an ``Analysis`` or its JSON dump (e.g. loaded back from storage).
    """
    key = _ALIASES.get(str(fmt).lower(), str(fmt).lower())
    if key not in MEDIA_TYPES:
        raise ValueError(f"unsupported format {fmt!r}; expected one of {', '.join(FORMATS)}")
    a = analysis if isinstance(analysis, Analysis) else Analysis.model_validate(analysis)
    body = _RENDERERS[key](a)
    return (body if isinstance(body, bytes) else body.encode("utf-8")), MEDIA_TYPES[key]


def render_figures(analysis: Analysis | dict) -> dict[str, bytes]:
    """PNG figures by file name (``bars.png``, plus ``curves.png`` when history exists)."""
    a = analysis if isinstance(analysis, Analysis) else Analysis.model_validate(analysis)
    return figures.render_figures(a)


# --------------------------------------------------------------------------- json


def to_json(a: Analysis) -> bytes:
    return a.model_dump_json().encode("utf-8")


# ---------------------------------------------------------------------------- csv

CSV_COLUMNS = [
    "variant", "metric", "direction", "n", "n_unfinished", "mean", "std", "ci_low", "ci_high",
    "reference", "test", "delta", "delta_ci_low", "delta_ci_high", "p", "p_corrected",
    "effect_size", "effect_size_kind", "verdict",
    "reference_prev", "delta_prev", "delta_prev_ci_low", "delta_prev_ci_high", "p_prev",
    "p_prev_corrected", "verdict_prev", "task", "p_family",
]  # fmt: skip


def csv_rows(a: Analysis) -> list[dict]:
    """One tidy row per variant x metric (spec order)."""
    rows = []
    task_of = {m: b.task for b in a.downstream.tasks for m in b.metrics} if a.downstream else {}
    family = {(f.variant, f.metric): f.p_family for f in a.downstream.family} \
        if a.downstream else {}
    for v in a.variants:
        for m in a.metrics:
            c = v.cells.get(m)
            row = {
                "variant": v.name,
                "metric": m,
                "direction": a.directions[m],
                "n": c.n if c else 0,
                "n_unfinished": v.n_unfinished,
                "mean": c and c.mean,
                "std": c and c.std,
                "ci_low": c.ci.low if c and c.ci else None,
                "ci_high": c.ci.high if c and c.ci else None,
            }
            row.update(_cmp_fields(v.vs_baseline.get(m), ""))
            row.update(_cmp_fields(v.vs_previous.get(m), "_prev"))
            row.update(task=task_of.get(m), p_family=family.get((v.name, m)))
            rows.append(row)
    return rows


def _cmp_fields(cmp, suffix: str) -> dict:
    """Comparison columns; ``suffix`` '' for vs baseline, '_prev' for vs previous row."""
    if cmp is None:
        return {}
    out = {
        f"reference{suffix}": cmp.reference,
        f"delta{suffix}": cmp.delta,
        f"delta{suffix}_ci_low": cmp.ci.low if cmp.ci else None,
        f"delta{suffix}_ci_high": cmp.ci.high if cmp.ci else None,
        f"p{suffix}": cmp.p,
        f"p{suffix}_corrected": cmp.p_corrected,
        f"verdict{suffix}": cmp.verdict,
    }
    if not suffix:
        out["test"] = cmp.test
        out["effect_size"] = cmp.effect_size.value if cmp.effect_size else None
        out["effect_size_kind"] = cmp.effect_size.kind if cmp.effect_size else None
    return out


def to_csv(a: Analysis) -> str:
    import pandas as pd

    frame = pd.DataFrame(csv_rows(a), columns=CSV_COLUMNS)
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.10g")
    return buf.getvalue()


# ----------------------------------------------------------------------- markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_cell(c: TCell) -> str:
    body = _md_escape(c.plain())
    if c.bold and c.main != "—":
        core = _md_escape(c.main if c.pm is None else f"{c.main} ± {c.pm}")
        body = f"**{core}**" + _md_escape(c.mark)
    return body


def _md_table(t: Table) -> list[str]:
    head = [_md_escape(f"{c.title} {c.arrow}".strip()) for c in t.columns]
    align = [":--" if c.align == "l" else "--:" for c in t.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    return lines


def to_markdown(a: Analysis) -> str:
    table = build_table(a)
    lines = [f"### {table.caption}", "", *_md_table(table), ""]
    lines += [f"- {_md_escape(n)}" for n in table.footnotes]
    factor = build_factor_table(a)
    if factor is not None:
        lines += ["", f"#### {factor.caption}", "", *_md_table(factor), ""]
        lines += [f"- {n}" for n in factor.footnotes]
    down = downstream_table(a)
    if down is not None:
        lines += ["", f"#### {down.caption}", "", *_md_table(down), ""]
        lines += [f"- {_md_escape(n)}" for n in down.footnotes]
    if a.sequential is not None:
        lines += ["", f"#### {sequential_caption(a)}", "", *_md_table(sequential_table(a))]
    if a.cost:
        cost = cost_table(a)
        lines += ["", f"#### {cost.caption}", "", *_md_table(cost), ""]
        lines += [f"- {n}" for n in cost.footnotes]
    if a.notes:
        lines += ["", "**Statistical notes**", ""] + [f"- {n}" for n in a.notes]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------- latex

_TEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "<": r"$<$", ">": r"$>$",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip
_TEX_UNICODE = {
    "±": r"$\pm$", "Δ": r"$\Delta$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
    "†": r"$^{\dagger}$", "‡": r"$^{\ddagger}$", "α": r"$\alpha$", "η²": r"$\eta^2$",
    "−": "$-$", "–": "--", "—": "---", "½": r"$\frac{1}{2}$", "≥": r"$\geq$",
}  # fmt: skip
_MATH_JOIN = re.compile(r"(?<!\\)\$\$")
_TEX_RE = re.compile("|".join(re.escape(k) for k in [*_TEX_UNICODE, *_TEX_SPECIAL]))


def tex(text: str) -> str:
    """Escape LaTeX specials and translate the unicode symbols the tables use."""
    out = _TEX_RE.sub(lambda m: _TEX_UNICODE.get(m.group(0)) or _TEX_SPECIAL[m.group(0)], text)
    return _MATH_JOIN.sub("", out)  # "$a$$b$" would open display math: join into "$ab$"


def _tex_cell(c: TCell) -> str:
    main = tex(c.main)
    if c.bold and c.main != "—":
        main = rf"\textbf{{{main}}}"
    if c.pm is not None:
        main += rf" $\pm$ {tex(c.pm)}"
    return main + tex(c.mark)


def _tex_table(t: Table) -> list[str]:
    spec = "".join(c.align for c in t.columns)
    head = " & ".join(tex(f"{c.title} {c.arrow}".strip()) for c in t.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{tex(t.caption)}}}",
        r"\resizebox{\linewidth}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        head + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_tex_cell(c) for c in row) + r" \\" for row in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if t.footnotes:
        notes = r" \\ ".join(tex(n) for n in t.footnotes)
        lines += [rf"\par\smallskip{{\footnotesize {notes}\par}}"]
    lines.append(r"\end{table}")
    return lines


def to_latex(a: Analysis) -> str:
    """booktabs tables (needs \\usepackage{booktabs,graphicx})."""
    lines = [f"% {tex(a.experiment)}: requires \\usepackage{{booktabs,graphicx}}"]
    lines += _tex_table(build_table(a))
    factor = build_factor_table(a)
    if factor is not None:
        lines += ["", *_tex_table(factor)]
    down = downstream_table(a)
    if down is not None:
        lines += ["", *_tex_table(down)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- html

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{padding:.25rem .6rem;border-bottom:1px solid #ddd;white-space:nowrap}
thead th{border-bottom:2px solid #333;background:#f6f6f6}
td.r,th.r{text-align:right}td.l,th.l{text-align:left}
td.better{color:#1b7f3b;font-weight:600}td.worse{color:#b3261e;font-weight:600}
td.insufficient{color:#888}.notes li{margin:.2rem 0;font-size:.85rem}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}.meta{color:#555;font-size:.9rem}
"""


def _html_cell(c: TCell, align: str) -> str:
    body = html.escape(c.main)
    if c.bold and c.main != "—":
        body = f"<strong>{body}</strong>"
    if c.pm is not None:
        body += f" ± {html.escape(c.pm)}"
    if c.mark:
        body += f"<sup>{html.escape(c.mark.strip())}</sup>"
    cls = f"{align} {c.css}".strip()
    return f'<td class="{cls}">{body}</td>'


def _html_table(t: Table, cls: str) -> list[str]:
    head = "".join(
        f'<th class="{c.align}">{html.escape(f"{c.title} {c.arrow}".strip())}</th>'
        for c in t.columns
    )
    out = [
        f'<table class="{cls}">',
        f"<caption>{html.escape(t.caption)}</caption>",
        f"<thead><tr>{head}</tr></thead>",
        "<tbody>",
    ]
    for row in t.rows:
        cells = "".join(_html_cell(c, col.align) for c, col in zip(row, t.columns, strict=True))
        out.append(f"<tr>{cells}</tr>")
    out += ["</tbody>", "</table>"]
    out += ['<ul class="notes">'] + [f"<li>{html.escape(n)}</li>" for n in t.footnotes] + ["</ul>"]
    return out


def _safe_url(url: str | None) -> str | None:
    """Only http(s) links are emitted (no javascript: or data: URLs)."""
    return url if url and re.match(r"^https?://", url, re.IGNORECASE) else None


def _html_trials(a: Analysis) -> list[str]:
    out = ["<h2>Trials</h2>", '<ul class="notes">']
    for v in a.variants:
        items = []
        for t in v.trials:
            label = html.escape(f"seed {t.seed} ({t.status})")
            url = _safe_url(t.mlflow_url)
            items.append(f'<a href="{html.escape(url, quote=True)}">{label}</a>' if url else label)
        out.append(f"<li><b>{html.escape(v.name)}</b>: {', '.join(items) or 'no trials'}</li>")
    return out + ["</ul>"]


def to_html(a: Analysis) -> str:
    title = html.escape(a.experiment)
    meta = html.escape(
        f"design {a.design} · baseline {a.baseline} · primary metric {a.primary_metric} · "
        f"α = {a.alpha:g} · correction {a.correction} · CI {a.ci_method}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title><style>{_CSS}</style></head><body>",
        f"<h1>{title}</h1>",
        f'<p class="meta">{meta}</p>',
    ]
    parts += _html_table(build_table(a), "ablation")
    factor = build_factor_table(a)
    if factor is not None:
        parts += ["<h2>Factor effects</h2>", *_html_table(factor, "factors")]
    down = downstream_table(a)
    if down is not None:
        parts += ["<h2>Downstream tasks</h2>", *_html_table(down, "downstream")]
    if a.sequential is not None:
        parts += [f"<h2>{html.escape(sequential_caption(a))}</h2>",
                  *_html_table(sequential_table(a), "sequential")]
    if a.cost:
        parts += ["<h2>Cost per trial</h2>", *_html_table(cost_table(a), "cost")]
    parts.append("<h2>Figures</h2>")
    for name, png in render_figures(a).items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
    parts += ["<h2>Statistical notes</h2>", '<ul class="notes">']
    parts += [f"<li>{html.escape(n)}</li>" for n in a.notes] + ["</ul>"]
    parts += _html_trials(a)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


_RENDERERS: dict[str, Callable[[Analysis], str | bytes]] = {
    "json": to_json,
    "markdown": to_markdown,
    "csv": to_csv,
    "latex": to_latex,
    "html": to_html,
    "png": render_summary_png,
}
