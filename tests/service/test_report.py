"""Every report format renders a planted analysis."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from service.analysis import Analysis, ExperimentView, TrialRecord, VariantView, analyze
from service.report import FORMATS, render, render_figures
from service.report.render import tex

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _view(design: str = "add_one_in", with_history: bool = True) -> ExperimentView:
    """MLM+ITM -> +ITC -> +ITC+ITM_hard, 5 seeds, one seed still running, one single-seed row."""
    rng = np.random.default_rng(0)
    means = {"MLM+ITM": 60.0, "+ITC": 63.0, "+ITC+ITM_hard": 64.5}
    trials = []
    for name, mu in means.items():
        for seed in range(5):
            recall = mu + rng.normal(0, 0.5)
            history = {"mean_recall": [(s * 100, recall * s / 5) for s in range(1, 6)]}
            trials.append(
                TrialRecord(
                    variant=name,
                    seed=seed,
                    status="finished",
                    metrics={
                        "mean_recall": recall,
                        "t2i_r1": recall - 10,
                        "val_loss": 3 - mu / 40 + rng.normal(0, 0.02),
                    },
                    history=history if with_history else {},
                    mlflow_url=f"http://mlflow.local/#/runs/{name}-{seed}",
                )
            )
    trials.append(TrialRecord(variant="+ITC", seed=5, status="running"))
    trials.append(
        TrialRecord(
            variant="w/ 50% & #1",
            seed=0,
            status="finished",
            metrics={"mean_recall": 61.0, "t2i_r1": 51.0, "val_loss": 1.2},
            mlflow_url="javascript:alert(1)",
        )
    )
    return ExperimentView(
        name="albef_ablation",
        design=design,
        variants=[VariantView(name=n) for n in [*means, "w/ 50% & #1"]],
        baseline="MLM+ITM",
        primary_metric="mean_recall",
        metrics=["mean_recall", "t2i_r1", "val_loss"],
        trials=trials,
    )


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    return analyze(_view())


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders(analysis: Analysis, fmt: str) -> None:
    body, media_type = render(analysis, fmt)
    assert isinstance(body, bytes) and body
    assert media_type.split(";")[0] in {
        "application/json",
        "text/markdown",
        "text/csv",
        "application/x-latex",
        "text/html",
        "image/png",
    }


def test_json_round_trips(analysis: Analysis) -> None:
    body, _ = render(analysis, "json")
    again = Analysis.model_validate(json.loads(body))
    assert again == analysis
    assert render(json.loads(body), "markdown") == render(analysis, "markdown")  # dict input


def test_markdown_is_a_paper_table(analysis: Analysis) -> None:
    text = render(analysis, "markdown")[0].decode()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0][2:] for r in rows[1:]] == [v.name for v in analysis.variants]
    assert "±" in text
    best = analysis.best["mean_recall"][0]
    best_row = next(r for r in rows if r.startswith(f"| {best} "))
    assert "**" in best_row
    assert "vs prev" in text and "holm" in text and "α = 0.05" in text
    assert "† single seed: no interval possible" in text
    assert "5 (+1 unfinished)" in text


def test_lower_is_better_is_bold_at_the_minimum(analysis: Analysis) -> None:
    assert analysis.best["val_loss"] == ["w/ 50% & #1"]  # planted lowest loss
    text = render(analysis, "markdown")[0].decode()
    row = next(line for line in text.splitlines() if line.startswith("| w/ 50%"))
    assert "**1.20**" in row


def test_latex_uses_booktabs_and_escapes(analysis: Analysis) -> None:
    text = render(analysis, "latex")[0].decode()
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\textbf{", r"$\pm$"):
        assert token in text
    assert r"w/ 50\% \& \#1" in text
    assert r"mean\_recall" in text
    assert "$$" not in text


def test_tex_escapes_specials() -> None:
    assert tex("a_b 5% & #1") == r"a\_b 5\% \& \#1"
    assert tex("<0.001") == "$<$0.001"


def test_csv_is_tidy_and_parses(analysis: Analysis) -> None:
    body, _ = render(analysis, "csv")
    frame = pd.read_csv(io.BytesIO(body))
    for col in [
        "variant", "metric", "n", "mean", "std", "ci_low", "ci_high", "delta", "delta_ci_low",
        "delta_ci_high", "p", "p_corrected", "effect_size", "verdict",
    ]:  # fmt: skip
        assert col in frame.columns
    assert len(frame) == len(analysis.variants) * len(analysis.metrics)
    row = frame[(frame.variant == "+ITC") & (frame.metric == "mean_recall")].iloc[0]
    cmp = analysis.variant("+ITC").vs_baseline["mean_recall"]
    assert row.delta == pytest.approx(cmp.delta)
    assert row.p_corrected == pytest.approx(cmp.p_corrected)
    assert row.verdict == cmp.verdict == "better"
    assert row.n == 5 and row.n_unfinished == 1


def test_png_and_figures(analysis: Analysis) -> None:
    body, media_type = render(analysis, "png")
    assert body.startswith(PNG_MAGIC) and media_type == "image/png"
    figures = render_figures(analysis)
    assert set(figures) == {"bars.png", "curves.png"}
    assert all(png.startswith(PNG_MAGIC) for png in figures.values())
    assert set(render_figures(analyze(_view(with_history=False)))) == {"bars.png"}


def test_html_is_self_contained(analysis: Analysis) -> None:
    text = render(analysis, "html")[0].decode()
    assert "<title>albef_ablation</title>" in text
    assert '<table class="ablation">' in text and "<strong>" in text
    assert '<img alt="bars.png" src="data:image/png;base64,' in text
    assert 'href="http://mlflow.local/#/runs/+ITC-0"' in text
    assert "javascript:" not in text  # unsafe URLs are shown, not linked
    assert "w/ 50% &amp; #1" in text
    assert "<link" not in text and "<script" not in text


def test_factorial_effects_are_rendered() -> None:
    rng = np.random.default_rng(1)
    trials, variants = [], []
    for itc in ("off", "on"):
        for hn in ("off", "on"):
            name = f"ITC={itc},HN={hn}"
            variants.append(VariantView(name=name, factor_levels={"ITC": itc, "HN": hn}))
            mu = 50 + 3 * (itc == "on") + 2 * (itc == "on" and hn == "on")
            trials += [
                TrialRecord(variant=name, seed=s, status="finished",
                            metrics={"mean_recall": mu + rng.normal(0, 0.3)})
                for s in range(4)
            ]  # fmt: skip
    view = ExperimentView(
        name="fact",
        design="factorial",
        variants=variants,
        baseline="ITC=off,HN=off",
        primary_metric="mean_recall",
        metrics=["mean_recall"],
        trials=trials,
    )
    a = analyze(view)
    md = render(a, "markdown")[0].decode()
    assert "Factor effects on mean_recall" in md and "| ITC x HN |" in md
    assert "partial $\\eta^2$" in render(a, "latex")[0].decode()


@pytest.mark.parametrize("fmt", ["xlsx", "", "pdf"])
def test_invalid_format_raises(analysis: Analysis, fmt: str) -> None:
    with pytest.raises(ValueError, match="format"):
        render(analysis, fmt)
