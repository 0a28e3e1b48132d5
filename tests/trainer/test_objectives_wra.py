"""WRA: IPOT against hand-computed transport problems, UNITER's OT loss, and its switch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.trainer.helpers import VOCAB, random_batch, tiny
from trainer.model.pretrainer import Pretrainer
from trainer.objectives.wra import cosine_cost, ipot, ot_distance, wra_loss


def _ones(b: int, n: int) -> torch.Tensor:
    return torch.ones(b, n, dtype=torch.bool)


def test_identical_point_sets_have_zero_distance_and_a_diagonal_plan() -> None:
    x = F.normalize(torch.eye(4)[None] + 0.05, dim=-1)  # 4 distinct unit vectors
    plan = ipot(cosine_cost(x, x), _ones(1, 4), _ones(1, 4), beta=0.5, iterations=50, k=1)
    assert torch.allclose(plan[0], torch.eye(4) / 4, atol=1e-3)
    assert float(ot_distance(x, _ones(1, 4), x, _ones(1, 4))) == pytest.approx(0.0, abs=1e-3)


def test_plan_marginals_are_uniform_over_valid_tokens_and_zero_on_padding() -> None:
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(2, 5, 7, generator=g)
    xm = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    ym = torch.tensor([[1] * 7, [1, 1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    plan = ipot(cost, xm, ym, beta=0.5, iterations=100, k=2)
    for b in range(2):
        m, n = int(xm[b].sum()), int(ym[b].sum())
        assert torch.allclose(plan[b].sum(1)[xm[b]], torch.full((m,), 1 / m), atol=1e-4)
        assert torch.allclose(plan[b].sum(0)[ym[b]], torch.full((n,), 1 / n), atol=1e-4)
        assert plan[b][~xm[b]].abs().sum() == 0 and plan[b][:, ~ym[b]].abs().sum() == 0


def test_one_word_spreads_its_mass_evenly_so_distance_is_mean_cost() -> None:
    # a single source point must send 1/n to each of n targets: D = mean_j (1 - cos(w, v_j))
    w = torch.tensor([[[1.0, 0.0]]])
    v = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    assert float(ot_distance(w, _ones(1, 1), v, _ones(1, 3))) == pytest.approx(1.0, abs=1e-5)


def test_two_by_two_picks_the_cheap_matching() -> None:
    cost = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    plan = ipot(cost, _ones(1, 2), _ones(1, 2), beta=0.1, iterations=100, k=1)
    assert torch.allclose(plan[0], torch.tensor([[0.5, 0.0], [0.0, 0.5]]), atol=1e-4)
    cost = torch.tensor([[[0.2, 0.6], [0.9, 0.1]]])  # exact OT = (0.2 + 0.1) / 2
    plan = ipot(cost, _ones(1, 2), _ones(1, 2), beta=0.05, iterations=200, k=1)
    assert float((cost * plan).sum()) == pytest.approx(0.15, abs=1e-3)


def test_wra_loss_pulls_matched_and_pushes_mismatched() -> None:
    d = torch.tensor([0.1, 0.2, 0.7, 0.9])
    matched = torch.tensor([True, True, False, False])
    assert float(wra_loss(d, matched)) == pytest.approx((0.1 + 0.2 - 0.7 - 0.9) / 4)


def test_gradient_flows_through_the_cost_only() -> None:
    x = torch.randn(1, 3, 4, requires_grad=True)
    y = torch.randn(1, 5, 4)
    ot_distance(x, _ones(1, 3), y, _ones(1, 5)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def _fusion_calls(**dotted: object) -> tuple[int, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**dotted), VOCAB)
    calls = [0]
    pt.model.fusion.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    out = pt(random_batch(), alpha_ramp=1.0, step=0)
    out.loss.backward()
    return calls[0], out.terms


def test_wra_switch_adds_its_term_and_its_fusion_passes() -> None:
    calls_off, terms_off = _fusion_calls()
    assert "loss_wra" not in terms_off
    calls_on, terms_on = _fusion_calls(**{"objectives.wra.enabled": True})
    assert "loss_wra" in terms_on and torch.isfinite(terms_on["loss_wra"])
    assert calls_on == calls_off + 2  # text side and (ALBEF) swapped image side of its pairs


def test_wra_runs_on_mome() -> None:
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**{"model.arch": "mome", "objectives.wra.enabled": True}), VOCAB)
    out = pt(random_batch(), alpha_ramp=1.0, step=0)
    assert "loss_wra" in out.terms
    out.loss.backward()
