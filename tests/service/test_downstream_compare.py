"""/compare with downstream tasks: a block per task, Holm across variants x tasks' primary
metrics (checked against Holm's formula on hand-made p values, ties included), UNITER's
Meta-Sum (checked against its definition), fine-tune samples in the cost, in every format,
through the real app on a real store."""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

import numpy as np
import pytest
from scipy import stats

from service import analysis as an
from service import report
from service.analysis.multiplicity import family_tests
from service.analysis.schema import Comparison
from service.api import new_variants
from service.specs import expand, parse_spec, spec_to_json
from service.store import Store
from tests.service.api_client import make_client

TASKS = ["vqa", "ve", "minimal_pairs"]
SPEC: dict[str, Any] = {
    "name": "downstream", "design": "explicit",
    "base": {"preset": "tiny", "set": {"schedule.steps": 3, "eval.downstream.tasks": TASKS}},
    "variants": [{"name": "full", "set": {}},
                 {"name": "no-itm", "set": {"objectives.itm.enabled": False}},
                 {"name": "no-mlm", "set": {"objectives.mlm.enabled": False}}],
    "seeds": 4, "metrics": {"primary": "mean_recall", "reported": ["vqa_accuracy"]},
}


def holm_by_definition(p: list[float]) -> list[float]:
    """Holm (1979): order the m p values, p_(1) <= ... <= p_(m); the i-th adjusted value is
    max over j <= i of min(1, (m - j + 1) p_(j))."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order, start=1):
        running = max(running, min(1.0, (m - rank + 1) * p[i]))
        out[i] = running
    return out


def _cmp(variant: str, metric: str, p: float | None, delta: float = 1.0) -> Comparison:
    return Comparison(variant=variant, reference="full", metric=metric, direction="higher",
                      n_variant=3, n_reference=3, delta=delta, p=p)


def test_the_family_is_holm_over_every_variant_and_task_ties_included() -> None:
    ps = [0.01, 0.04, 0.04, 0.03, 0.5, 0.004]
    members = [("vqa", _cmp("a", "vqa_accuracy", ps[0])), ("ve", _cmp("a", "ve_accuracy", ps[1])),
               ("nlvr", _cmp("a", "nlvr_accuracy", ps[2], delta=-1.0)),
               ("vqa", _cmp("b", "vqa_accuracy", ps[3], delta=-2.0)),
               ("ve", _cmp("b", "ve_accuracy", ps[4])),
               ("nlvr", _cmp("b", "nlvr_accuracy", ps[5]))]
    got = family_tests(members, alpha=0.05)
    want = holm_by_definition(ps)
    assert [f.p_family for f in got] == pytest.approx(want)
    assert want[1] == want[2]  # tied p values get one adjusted value
    # 0.004*6 = 0.024 < 0.05; 0.01*5 = 0.05 is not below alpha: only the first is decided
    assert [f.verdict for f in got] == ["no detectable difference"] * 5 + ["better"]
    assert [(f.variant, f.task) for f in got][:2] == [("a", "vqa"), ("a", "ve")]


def test_a_member_without_a_p_value_stays_out_of_the_family() -> None:
    got = family_tests([("vqa", _cmp("a", "vqa_accuracy", 0.02)),
                        ("ve", _cmp("a", "ve_accuracy", None))], alpha=0.05)
    assert [f.p_family for f in got] == [pytest.approx(0.02), None]  # m = 1, not 2
    assert got[1].verdict == "insufficient data"


def plant(store: Store, missing: tuple[str, int] | None = None) -> str:
    """The experiment with every trial finished through the store as the supervisor does,
    its evaluations recorded with it; the no-itm arm is worse on VQA by a planted 0.1."""
    parsed = parse_spec(json.dumps(SPEC).encode())
    expansion = expand(parsed)
    exp = store.create_experiment(
        name=parsed.name, description="", spec=spec_to_json(parsed), design=parsed.design,
        baseline=expansion.baseline, primary_metric=parsed.metrics.primary,
        variants=new_variants(expansion))
    rng = np.random.default_rng(1)
    for v in exp.variants:
        for t in v.trials:
            m = {"mean_recall": 40 + t.seed + rng.normal(0, 0.5),
                 "vqa_accuracy": 0.5 + 0.02 * t.seed - 0.1 * (v.name == "no-itm")
                 + rng.normal(0, 0.005),
                 "ve_accuracy": 0.4 + 0.01 * t.seed + rng.normal(0, 0.02),
                 "minimal_pairs_text": 0.3, "minimal_pairs_image": 0.2,
                 "minimal_pairs_group": 0.1 + rng.normal(0, 0.01),
                 "cost_samples": 24.0, "cost_train_s": 10.0,
                 "cost_flops": 1e9,
                 "cost_finetune_s_vqa": 3.0, "cost_finetune_s_ve": 2.0,
                 "cost_finetune_s_minimal_pairs": 0.5,
                 "cost_finetune_flops_vqa": 3e8, "cost_finetune_flops_ve": 2e8,
                 "cost_finetune_flops_minimal_pairs": 0.0}
            if (v.name, t.seed) == missing:
                del m["ve_accuracy"]
            evals = {task: (f"key-{task}-{t.id}", {k: x for k, x in m.items()
                                                    if k.startswith(task)}) for task in TASKS}
            store.mark_running(t.id, worker_pid=os.getpid())
            store.mark_finished(t.id, metrics=m, mlflow_run_id=f"r{t.id}",
                                mlflow_experiment_id="7", steps=3, evaluations=evals)
    return exp.id


@pytest.fixture
def client(tmp_path):
    c = make_client(tmp_path)
    with c:
        yield c


def _json(client, exp_id: str) -> an.Analysis:
    r = client.get(f"/experiments/{exp_id}/compare")
    assert r.status_code == 200, r.text
    return an.Analysis.model_validate(r.json())


def test_compare_has_a_block_per_task_the_family_and_the_meta_sum(client) -> None:
    exp_id = plant(client.store, missing=("no-mlm", 3))
    a = _json(client, exp_id)
    d = a.downstream
    assert d is not None
    assert [(b.task, b.metrics, b.primary) for b in d.tasks] == [
        ("vqa", ["vqa_accuracy"], "vqa_accuracy"), ("ve", ["ve_accuracy"], "ve_accuracy"),
        ("minimal_pairs", ["minimal_pairs_text", "minimal_pairs_image", "minimal_pairs_group"],
         "minimal_pairs_group")]
    # the family: 2 variants x 3 tasks' primary metrics, Holm together on the raw paired p
    raw = [a.variant(f.variant).vs_baseline[f.metric].p for f in d.family]
    assert [(f.variant, f.task) for f in d.family] == [
        (v, t) for v in ("no-itm", "no-mlm") for t in TASKS]
    assert [f.p_family for f in d.family] == pytest.approx(holm_by_definition(raw))
    assert d.family[0].verdict == "worse"  # the planted VQA drop survives the family
    assert any(n.startswith("Downstream family: Holm across variants x tasks") for n in a.notes)
    # Meta-Sum by definition: per trial the sum of the tasks' primary metrics, then paired
    assert d.meta_sum == "meta_sum" and a.directions["meta_sum"] == "higher"
    trials = {(t.variant, t.seed): t for t in client.store.get_experiment(exp_id).trials}
    def sums(variant: str) -> list[float]:
        out = []
        for seed in range(4):
            m = trials[(variant, seed)].metrics
            if all(k in m for k in ("vqa_accuracy", "ve_accuracy", "minimal_pairs_group")):
                out.append(m["vqa_accuracy"] + m["ve_accuracy"] + m["minimal_pairs_group"])
        return out
    full, no_itm = sums("full"), sums("no-itm")
    cell = a.variant("no-itm").cells["meta_sum"]
    assert cell.values == pytest.approx(no_itm) and cell.mean == pytest.approx(np.mean(no_itm))
    cmp = a.variant("no-itm").vs_baseline["meta_sum"]
    assert cmp.test == "paired_t"
    assert cmp.p == pytest.approx(stats.ttest_rel(no_itm, full).pvalue)
    # a trial lacking a task has no Meta-Sum (never a partial sum)
    assert a.variant("no-mlm").cells["meta_sum"].n == 3
    # cost: the fine-tunes' samples next to pretraining's (vqa + ve; minimal pairs zero-shot)
    cost = {c.variant: c for c in a.cost}
    assert cost["full"].finetune_samples == 2 * 400 * 32 and cost["full"].samples == 24.0
    # and their time, the sum of the tasks' evaluations, against the arm's own training time
    assert cost["full"].finetune_s == pytest.approx(5.5)
    assert cost["full"].finetune_s_ratio == pytest.approx(0.55)
    # and their training FLOPs (the zero-shot probe's none) against pretraining's
    assert cost["full"].finetune_flops == pytest.approx(5e8)
    assert cost["full"].finetune_flops_ratio == pytest.approx(0.5)


def test_every_format_shows_the_task_blocks(client) -> None:
    exp_id = plant(client.store)
    get = lambda fmt: client.get(f"/experiments/{exp_id}/compare", params={"format": fmt})  # noqa: E731
    md = get("markdown").text
    assert "#### Downstream tasks: downstream" in md
    assert "vqa: p (Holm, family)" in md and "Meta-Sum" in md and "fine-tune samples" in md
    assert "5.5 s (×0.55 of training)" in md and "500 MFLOP (×0.50 of training)" in md
    head = md.split("#### Downstream")[0].splitlines()[2]  # the main table's header row
    assert "mean_recall" in head and "vqa_accuracy" not in head
    rows = list(csv.DictReader(io.StringIO(get("csv").text)))
    vqa = [r for r in rows if r["metric"] == "vqa_accuracy" and r["variant"] == "no-itm"]
    assert vqa[0]["task"] == "vqa" and float(vqa[0]["p_family"]) > 0
    assert "Downstream tasks" in get("latex").text.replace("\\", "")
    page = get("html").text
    assert '<table class="downstream">' in page and "Downstream family" in page
    assert get("png").content.startswith(b"\x89PNG")
    assert "Downstream tasks" in client.get(f"/experiments/{exp_id}/report").text
    figures = report.render_figures(_json(client, exp_id))
    assert all(body.startswith(b"\x89PNG") for body in figures.values())


def test_without_tasks_the_comparison_is_as_before(client) -> None:
    spec = {**SPEC, "base": {"preset": "tiny", "set": {"schedule.steps": 3}},
            "metrics": {"primary": "mean_recall", "reported": []}}
    parsed = parse_spec(json.dumps(spec).encode())
    expansion = expand(parsed)
    exp = client.store.create_experiment(
        name="plain", description="", spec=spec_to_json(parsed), design="explicit",
        baseline=expansion.baseline, primary_metric="mean_recall",
        variants=new_variants(expansion))
    a = _json(client, exp.id)
    assert a.downstream is None and a.metrics == ["mean_recall"]
