"""IAIS: the singular and distributed projections and the KL regulariser against hand-made
tensors, explicit attention maps that match SDPA, and the switch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.trainer.helpers import VOCAB, random_batch, tiny
from trainer.model.build import build_model
from trainer.model.pretrainer import Pretrainer
from trainer.objectives.iais import iais_loss, project_distributed, project_singular


def test_singular_projection_reads_the_aligned_tokens_relations() -> None:
    a_image = torch.tensor([[[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]]])
    a_cross = torch.tensor([[[0.1, 0.1, 0.8], [0.6, 0.3, 0.1]]])  # words -> tokens 2 and 0
    got = project_singular(a_image, a_cross)
    want = torch.tensor([[[a_image[0, 2, 2], a_image[0, 2, 0]],
                          [a_image[0, 0, 2], a_image[0, 0, 0]]]])
    assert torch.allclose(got, want)


def test_distributed_projection_is_the_sandwich_product() -> None:
    g = torch.Generator().manual_seed(0)
    a_image = F.softmax(torch.randn(1, 3, 3, generator=g), -1)
    a_cross = F.softmax(torch.randn(1, 2, 3, generator=g), -1)
    got = project_distributed(a_image, a_cross)
    for i in range(2):
        for k in range(2):
            want = sum(float(a_cross[0, i, j]) * float(a_image[0, j, q]) * float(a_cross[0, k, q])
                       for j in range(3) for q in range(3))
            assert float(got[0, i, k]) == pytest.approx(want, rel=1e-5)


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def test_iais_loss_is_symmetric_kl_over_real_words() -> None:
    a_text = torch.tensor([[[0.7, 0.3, 0.0], [0.4, 0.6, 0.0], [0.5, 0.5, 0.0]]])
    proj = torch.tensor([[[0.2, 0.2, 0.6], [0.5, 0.5, 0.0], [0.9, 0.1, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])  # third word is padding: neither a row nor a key
    a0, p0 = [0.7, 0.3], [0.5, 0.5]  # row 0 of the projection renormalised over real keys
    a1, p1 = [0.4, 0.6], [0.5, 0.5]
    want = (_kl(a0, p0) + _kl(p0, a0) + _kl(a1, p1) + _kl(p1, a1)) / 2
    assert float(iais_loss(a_text, proj, mask)) == pytest.approx(want, rel=1e-5)
    assert float(iais_loss(proj, a_text, mask)) == pytest.approx(want, rel=1e-5)  # symmetric
    assert float(iais_loss(a_text, a_text, mask)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("arch", ["albef", "mome"])
def test_relation_maps_are_distributions_of_the_right_shape(arch: str) -> None:
    torch.manual_seed(0)
    cfg = tiny(**{"model.arch": arch})
    m = build_model(cfg.model, vocab_size=VOCAB.size, image_size=32, max_len=30).eval()
    b = random_batch()
    text, image = m.encode_text(b.input_ids, b.attention_mask), m.encode_image(b.images)
    maps = m.relation_attention(b.images, text, b.attention_mask, image)
    assert maps.text.shape == (6, 12, 12) and maps.image.shape == (6, 17, 17)
    assert maps.cross.shape == (6, 12, 17)
    for a in maps:
        assert torch.allclose(a.sum(-1), torch.ones(a.shape[:2]), atol=1e-5)
    assert maps.text[:, :, -2:].abs().max() < 1e-6  # no attention to padding


def test_explicit_attention_equals_what_sdpa_computes() -> None:
    torch.manual_seed(0)
    cfg = tiny()
    m = build_model(cfg.model, vocab_size=VOCAB.size, image_size=32, max_len=30).eval()
    att = m.fusion.layer[0].attention
    x = torch.randn(2, 5, 64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    probs = att.probs(x, x, mask)  # [B,H,L,L]
    v = att.self.value(x).view(2, 5, 2, 32).transpose(1, 2)
    h = (probs @ v).transpose(1, 2).reshape(2, 5, 64)
    assert torch.allclose(att.output(h, x), att(x, x, mask), atol=1e-5)


def _vision_embedding_calls(**dotted: object):
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**dotted), VOCAB)
    calls = [0]
    pt.model.vision.embeddings.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    out = pt(random_batch(), alpha_ramp=1.0, step=0)
    out.loss.backward()
    return calls[0], out.terms


@pytest.mark.parametrize("variant", ["singular", "distributed"])
def test_iais_switch_adds_term_and_its_attention_pass_only_when_on(variant: str) -> None:
    off_calls, off = _vision_embedding_calls()
    assert "loss_iais" not in off and off_calls == 1
    on_calls, on = _vision_embedding_calls(**{"objectives.iais.enabled": True,
                                              "objectives.iais.variant": variant})
    assert "loss_iais" in on and torch.isfinite(on["loss_iais"]) and on_calls == 2


def test_iais_gradients_are_finite_with_padding() -> None:
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**{"objectives.iais.enabled": True}), VOCAB)
    out = pt(random_batch(), alpha_ramp=1.0, step=0)  # two padded positions per caption
    assert "loss_iais" in out.terms
    pt.zero_grad()
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in pt.parameters() if p.grad is not None)
