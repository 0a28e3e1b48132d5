"""Renderers of an analysis (json, markdown, csv, latex, html, png); they only render."""

from service.report.render import FORMATS, MEDIA_TYPES, render, render_figures

__all__ = ["FORMATS", "MEDIA_TYPES", "render", "render_figures"]
