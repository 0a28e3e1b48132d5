"""VILLA: the ascent step, projection and symmetric KL against their formulas, PGD on a
hand-made problem, and the switch (off = no term and no extra passes; on = counted passes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.trainer.helpers import VOCAB, random_batch, tiny
from trainer.config import ConfigError
from trainer.model.pretrainer import Pretrainer
from trainer.objectives.villa import ascent_step, pgd, project_l2, symmetric_kl


def test_projection_keeps_small_tokens_and_shrinks_large_ones() -> None:
    delta = torch.tensor([[[3.0, 4.0], [0.3, 0.4]]])  # norms 5 and 0.5
    out = project_l2(delta, 1.0)
    assert torch.allclose(out[0, 0], torch.tensor([0.6, 0.8]))
    assert torch.allclose(out[0, 1], delta[0, 1])


def test_ascent_step_moves_along_the_normalised_gradient() -> None:
    delta = torch.zeros(1, 1, 2)
    grad = torch.tensor([[[0.0, 10.0]]])
    assert torch.allclose(ascent_step(delta, grad, 0.3, 1.0), torch.tensor([[[0.0, 0.3]]]))
    assert torch.allclose(ascent_step(delta, grad, 3.0, 1.0), torch.tensor([[[0.0, 1.0]]]))


def test_symmetric_kl_matches_formula() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    p, q = F.softmax(a, -1), F.softmax(b, -1)
    want = ((p * (p / q).log()).sum(-1) + (q * (q / p).log()).sum(-1)).mean()
    assert torch.allclose(symmetric_kl(a, b), want, atol=1e-6)
    assert float(symmetric_kl(a, a)) == pytest.approx(0.0, abs=1e-7)


def test_pgd_climbs_a_linear_objective_to_the_ball_boundary() -> None:
    w = torch.tensor([1.0, 2.0, 2.0])  # loss = w . delta, maximised at eps * w / |w|
    delta = pgd(lambda d: (d * w).sum(), torch.zeros(1, 1, 3), steps=5, lr=0.3, epsilon=0.5)
    assert torch.allclose(delta[0, 0], 0.5 * w / 3.0, atol=1e-6)


def _run(**dotted: object):
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**dotted), VOCAB)
    calls = [0]
    fusion = pt.model.fusion if hasattr(pt.model, "fusion") else pt.model.norm
    fusion.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    out = pt(random_batch(), alpha_ramp=1.0, step=0)
    out.loss.backward()
    return pt, calls[0], out


def test_villa_off_costs_nothing_and_on_reports_its_extra_passes() -> None:
    _, base_calls, off = _run()
    assert "loss_villa" not in off.terms and "villa_extra_forwards" not in off.logs
    for tasks in (["itm"], ["mlm"], ["itm", "mlm"]):
        for modality in ("image", "text"):
            pt, calls, on = _run(**{"objectives.villa.enabled": True,
                                    "objectives.villa.modality": modality,
                                    "objectives.villa.tasks": tasks,
                                    "objectives.villa.adv_steps": 3})
            assert "loss_villa" in on.terms and torch.isfinite(on.terms["loss_villa"])
            # per task: 1 clean + 3 ascent + 1 final fusion pass
            extra = 5 * len(tasks)
            assert calls == base_calls + extra == base_calls + on.logs["villa_extra_forwards"]
            assert on.logs["villa_extra_backwards"] == 3 * len(tasks)
            assert on.logs["villa_seconds"] > 0
            for t in tasks:
                assert on.logs[f"villa_delta_norm_{t}"] <= 1.0 + 1e-5
                assert pt.objectives[t].head.dense.weight.grad is not None if t == "mlm" \
                    else pt.objectives[t].head.weight.grad is not None
            assert sum(on.logs[f"villa_loss_{t}"] for t in tasks) == pytest.approx(
                float(on.terms["loss_villa"]), rel=1e-5)


def test_default_tasks_are_the_enabled_ones() -> None:
    pt = Pretrainer(tiny(**{"objectives.villa.enabled": True}), VOCAB)
    assert pt.objectives["villa"].tasks == ["itm", "mlm"]
    pt = Pretrainer(tiny(**{"objectives.villa.enabled": True, "objectives.mlm.enabled": False}),
                    VOCAB)
    assert pt.objectives["villa"].tasks == ["itm"]


@pytest.mark.parametrize("task", ["itm", "mlm"])
@pytest.mark.parametrize("modality", ["image", "text"])
def test_a_zero_perturbation_gives_the_clean_logits(task: str, modality: str) -> None:
    """The perturbed path is the clean path plus delta: at delta = 0 it is the same function,
    so the adversarial term measures the perturbation and nothing else."""
    from trainer.model.forward import StepContext
    from trainer.objectives.villa import TASKS

    torch.manual_seed(0)
    pt = Pretrainer(tiny(), VOCAB).eval()
    ctx = StepContext(pt.model, None, random_batch(), alpha_ramp=1.0, step=0)
    ctx.objectives = dict(pt.objectives.items())
    adv = TASKS[task](ctx, modality)
    assert adv is not None
    assert torch.allclose(adv.logits(torch.zeros(adv.inputs.delta_shape)), adv.clean, atol=1e-5)
    if task == "mlm":  # rows are the masked tokens, labels their original ids
        assert adv.clean.shape == (len(adv.labels), VOCAB.size)
        assert bool((adv.labels >= 0).all())
    else:  # positives first, then one negative per caption
        assert adv.labels.tolist() == [1] * 6 + [0] * 6


def test_villa_needs_the_heads_of_its_tasks() -> None:
    off = {"objectives.itm.enabled": False, "objectives.mlm.enabled": False}
    with pytest.raises(ConfigError) as err:
        Pretrainer(tiny(**{"objectives.villa.enabled": True, **off}), VOCAB)
    assert err.value.field == "objectives.villa.enabled"
    with pytest.raises(ConfigError) as err:
        Pretrainer(tiny(**{"objectives.villa.enabled": True, "objectives.villa.tasks": ["itm"],
                           "objectives.itm.enabled": False}), VOCAB)
    assert err.value.field == "objectives.villa.tasks" and "itm" in str(err.value)


def test_villa_runs_on_mome() -> None:
    _, _, out = _run(**{"model.arch": "mome", "objectives.villa.enabled": True,
                        "objectives.villa.modality": "text"})
    assert "loss_villa" in out.terms


@pytest.mark.parametrize("scale", ["absolute", "embedding_norm"])
@pytest.mark.parametrize("modality", ["image", "text"])
def test_epsilon_is_absolute_or_a_fraction_of_each_tokens_embedding_norm(
    scale: str, modality: str
) -> None:
    """A large step puts every token's delta on the ball's boundary: radius epsilon, or epsilon
    times that token's own embedding norm (random-init embeddings are far from norm 1). The
    logged means cover the tokens the perturbation reaches: text padding is left out."""
    eps = 0.05
    _, _, out = _run(**{"objectives.villa.enabled": True, "objectives.villa.tasks": ["itm"],
                        "objectives.villa.modality": modality, "objectives.villa.adv_lr": 10.0,
                        "objectives.villa.epsilon": eps,
                        "objectives.villa.epsilon_scale": scale})
    norm, ratio = out.logs["villa_delta_norm_itm"], out.logs["villa_delta_ratio_itm"]
    if scale == "absolute":
        assert norm == pytest.approx(eps, rel=1e-4)
        assert ratio != pytest.approx(eps, rel=0.05)  # patch norms are not 1 at init
    else:
        assert ratio == pytest.approx(eps, rel=1e-4)
        assert norm != pytest.approx(eps, rel=0.05)
