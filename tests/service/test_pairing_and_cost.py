"""Verified pairing (trials' fingerprints decide paired vs Welch) and the cost per arm.

The Welch reference is written from the textbook formula (Welch 1947, Satterthwaite df), and
the deliberately unpaired experiment is a real one: arms trained with different batch sizes,
whose data order therefore differs at every seed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from service.analysis import ExperimentView, TrialRecord, VariantView, analyze
from service.report import render
from tests.trainer.test_fingerprints import cfg as small_config
from trainer.loop import train

BASE = [30.1, 31.4, 29.8, 32.0, 30.9]
LESS = [28.0, 30.1, 27.9, 30.2, 29.5]
SAME = {"data_order": "aa", "init.model.vision": "bb", "stream.mlm": "cc"}


def _view(prints_b: list[dict[str, str] | None], cost: bool = False) -> ExperimentView:
    trials = []
    for name, values, prints in (("base", BASE, [SAME] * 5), ("abl", LESS, prints_b)):
        for seed, (v, fp) in enumerate(zip(values, prints, strict=True)):
            metrics = {"mean_recall": v}
            if cost:
                metrics |= {"cost_samples": 800.0, "cost_flops": (2e12 if name == "abl" else
                            1e12) + seed, "cost_train_s": 10.0 + (5 if name == "abl" else 0)}
            trials.append(TrialRecord(variant=name, seed=seed, status="finished",
                                      metrics=metrics, fingerprints=fp))
    return ExperimentView(name="x", design="explicit", variants=[VariantView(name="base"),
                          VariantView(name="abl")], baseline="base", primary_metric="mean_recall",
                          metrics=["mean_recall"], trials=trials)


def _welch_p(a: list[float], b: list[float]) -> tuple[float, float]:
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return 2 * stats.t.sf(abs(t), df), df


def test_agreeing_fingerprints_keep_the_paired_test() -> None:
    cmp = analyze(_view([SAME] * 5)).variant("abl").vs_baseline["mean_recall"]
    assert cmp.test == "paired_t" and cmp.pairing == "verified"
    d = np.subtract(LESS, BASE)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(5))
    assert cmp.p == pytest.approx(2 * stats.t.sf(abs(t), 4), rel=1e-9)


def test_one_differing_fingerprint_falls_back_to_welch_and_says_why() -> None:
    broken = [SAME, SAME, {**SAME, "data_order": "zz"}, SAME, SAME]
    a = analyze(_view(broken))
    cmp = a.variant("abl").vs_baseline["mean_recall"]
    p, df = _welch_p(LESS, BASE)
    assert cmp.test == "welch_t"
    assert cmp.p == pytest.approx(p, rel=1e-9) and cmp.df == pytest.approx(df, rel=1e-9)
    assert cmp.pairing == "broken: data_order differs at seed 2"
    assert cmp.note == "unpaired, data_order differs at seed 2: Welch t-test"
    assert "pairing broken: data_order differs at seed 2" in render(a, "markdown")[0].decode()


def test_fingerprints_only_one_arm_has_do_not_count_and_missing_ones_are_reported() -> None:
    extra_stream = [{**SAME, "stream.itm": "dd"}] * 5  # ITM on in one arm only
    cmp = analyze(_view(extra_stream)).variant("abl").vs_baseline["mean_recall"]
    assert cmp.test == "paired_t" and cmp.pairing == "verified"
    unrecorded = analyze(_view([None] * 5)).variant("abl").vs_baseline["mean_recall"]
    assert unrecorded.test == "paired_t"
    assert unrecorded.pairing == ("not verified: 5 of 5 seeds have a trial that recorded no "
                                  "fingerprints")


def test_cost_per_arm_beside_the_effect() -> None:
    a = analyze(_view([SAME] * 5, cost=True))
    rows = {c.variant: c for c in a.cost}
    assert rows["abl"].flops == pytest.approx(2e12 + 2)  # mean over seeds 0..4
    assert rows["abl"].flops_ratio == pytest.approx((2e12 + 2) / (1e12 + 2))
    assert rows["abl"].train_s_ratio == pytest.approx(15 / 10)
    assert rows["base"].samples == 800
    md = render(a, "markdown")[0].decode()
    assert "Cost per trial" in md and "2 TFLOP (×2.00)" in md
    assert analyze(_view([SAME] * 5)).cost == []  # no trial recorded a cost


def test_a_deliberately_unpaired_experiment(tmp_path: Path) -> None:
    """Two arms whose batch sizes differ: same seeds, but not the same data order."""
    trials = []
    for name, batch in (("b8", 8), ("b12", 12)):
        for seed in (0, 1):
            out = train(small_config(tmp_path, **{"data.batch_size": batch,
                                                   "schedule.steps": 2}), seed)
            trials.append(TrialRecord(variant=name, seed=seed, status="finished",
                                      metrics={**out.metrics, **out.cost},
                                      fingerprints=out.fingerprints))
    view = ExperimentView(name="unpaired", design="explicit",
                          variants=[VariantView(name="b8"), VariantView(name="b12")],
                          baseline="b8", primary_metric="final_loss", metrics=["final_loss"],
                          trials=trials)
    cmp = analyze(view).variant("b12").vs_baseline["final_loss"]
    assert cmp.test == "welch_t"
    assert cmp.pairing == "broken: data_order differs at seeds 0, 1"
