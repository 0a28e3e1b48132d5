"""Matplotlib figures for an ``Analysis`` (bars with CI whiskers, learning curves).

Uses the object-oriented API with an explicit Agg canvas (no pyplot, no global
backend switch), so it is safe inside a server process; matplotlib is imported lazily.
"""

from __future__ import annotations

import io
import math

import numpy as np

from service.analysis import Analysis

BASE_COLOR, VARIANT_COLOR, BEST_EDGE = "#9e9e9e", "#4c78a8", "#d62728"
MAX_LEGEND = 12


def _new_figure(width: float, height: float, many: bool = False):
    """Figure bound to an Agg canvas; fixed margins for big figures (layout engines are slow)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=None if many else "constrained")
    if many:
        fig.subplots_adjust(left=0.06, right=0.98, top=0.96, bottom=0.08, hspace=0.9)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _bar_geometry(n_variants: int, n_metrics: int) -> tuple[int, float]:
    """Columns of the subplot grid and the width of one panel in inches."""
    ncols = 1 if n_variants > 12 else min(3, n_metrics)
    width = min(16.0, max(3.5, 0.35 * n_variants + 1.5))
    return ncols, width


def draw_bars(ax, a: Analysis, metric: str) -> None:
    """Mean bars, CI whiskers and every seed's value for one metric."""
    names = [v.name for v in a.variants]
    x = np.arange(len(names))
    cells = [v.cells.get(metric) for v in a.variants]
    means = np.array([c.mean if c and c.mean is not None else np.nan for c in cells])
    lo = np.array([c.ci.low if c and c.ci else np.nan for c in cells])
    hi = np.array([c.ci.high if c and c.ci else np.nan for c in cells])
    best = set(a.best.get(metric, []))
    colors = [BASE_COLOR if v.is_baseline else VARIANT_COLOR for v in a.variants]
    widths = [2.0 if n in best else 0.0 for n in names]
    ax.bar(x, np.nan_to_num(means), color=colors, edgecolor=BEST_EDGE, linewidth=widths, alpha=0.8)
    ok = np.isfinite(lo)
    ax.errorbar(
        x[ok],
        means[ok],
        yerr=[means[ok] - lo[ok], hi[ok] - means[ok]],
        fmt="none",
        ecolor="black",
        capsize=3,
        linewidth=1,
    )
    px: list[float] = []
    pts: list[float] = []
    for i, c in enumerate(cells):
        if c and c.values:
            k = len(c.values)
            px.extend(i + (np.linspace(-0.2, 0.2, k) if k > 1 else np.zeros(1)))
            pts.extend(c.values)
    ax.scatter(px, pts, s=10 if len(names) <= 30 else 4, color="black", zorder=3)  # one artist
    _zoom(ax, [*means[np.isfinite(means)], *lo[ok], *hi[ok], *pts])
    arrow = "↑" if a.directions.get(metric) == "higher" else "↓"
    ax.set_title(f"{metric} {arrow}", fontsize=10)
    ax.set_ylabel("y axis not from 0", fontsize=7, color="#777")
    small = len(names) <= 12
    ax.set_xticks(x, names, rotation=45 if small else 90, ha="right", fontsize=8 if small else 5)


def _zoom(ax, values: list[float]) -> None:
    """Focus the y axis on the data: seed-to-seed differences are small vs the mean."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.15 or abs(hi) * 0.05 or 1.0
    ax.set_ylim(lo - pad, hi + pad)


def draw_curves(ax, a: Analysis) -> None:
    """Primary metric over training steps: mean line and ±1 std band per variant.

    A variant evaluated only once (no validation during training) is a point with a ±1 std bar:
    a line through one point draws nothing."""
    for curve in a.curves:
        steps = np.array(curve.steps)
        mean = np.array(curve.mean)
        std = np.array([s if s is not None else np.nan for s in curve.std])
        if len(steps) == 1:
            ax.errorbar(steps, mean, yerr=np.nan_to_num(std), fmt="o", capsize=3,
                        label=curve.variant)
            continue
        (line,) = ax.plot(steps, mean, label=curve.variant, linewidth=1.2,
                          marker="o" if len(steps) <= 10 else None, markersize=3)
        ok = np.isfinite(std)
        ax.fill_between(
            steps[ok],
            (mean - std)[ok],
            (mean + std)[ok],
            alpha=0.2,
            color=line.get_color(),
            linewidth=0,
        )
    ax.set_xlabel("step")
    ax.set_title(f"{a.primary_metric}: mean ± std over seeds", fontsize=10)
    if 0 < len(a.curves) <= MAX_LEGEND:
        ax.legend(fontsize=7)


def bars_figure(a: Analysis):
    """One panel per metric."""
    ncols, width = _bar_geometry(len(a.variants), len(a.metrics))
    nrows = math.ceil(len(a.metrics) / ncols)
    fig = _new_figure(width * ncols, 3.4 * nrows, many=len(a.variants) > 30)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, metric in zip(axes, a.metrics, strict=False):
        draw_bars(ax, a, metric)
    for ax in axes[len(a.metrics) :]:
        ax.set_visible(False)
    fig.suptitle(f"{a.experiment}: mean, {a.confidence:.0%} CI, seeds", fontsize=11)
    return fig


def curves_figure(a: Analysis):
    fig = _new_figure(7.5, 4.0)
    draw_curves(fig.subplots(), a)
    return fig


def summary_figure(a: Analysis):
    """Bars for every metric plus the learning curves, in one image."""
    ncols, width = _bar_geometry(len(a.variants), len(a.metrics))
    panels = len(a.metrics) + (1 if a.curves else 0)
    nrows = math.ceil(panels / ncols)
    fig = _new_figure(width * ncols, 3.4 * nrows, many=len(a.variants) > 30)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, metric in zip(axes, a.metrics, strict=False):
        draw_bars(ax, a, metric)
    if a.curves:
        draw_curves(axes[len(a.metrics)], a)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.suptitle(a.experiment, fontsize=11)
    return fig


def render_figures(a: Analysis) -> dict[str, bytes]:
    """PNG files by name: ``bars.png`` always, ``curves.png`` when history exists."""
    out = {"bars.png": _png(bars_figure(a))}
    if a.curves:
        out["curves.png"] = _png(curves_figure(a))
    return out


def render_summary_png(a: Analysis) -> bytes:
    return _png(summary_figure(a))
