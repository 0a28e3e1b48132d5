"""VLMo's multiway transformer: the ALBEF interface, its three modes, experts per modality, and
the parameter match the vlmo_mome spec relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from service.specs import expand, parse_spec
from tests.trainer.helpers import VOCAB, random_batch, tiny
from trainer.model.build import build_model, count_parameters
from trainer.model.mome import MoMEModel
from trainer.model.pretrainer import Pretrainer

SPEC = Path(__file__).resolve().parents[2] / "experiments" / "vlmo_mome.yaml"


def _mome(**dotted: object) -> MoMEModel:
    torch.manual_seed(0)
    cfg = tiny(**{"model.arch": "mome", **dotted})
    model = build_model(cfg.model, vocab_size=VOCAB.size, image_size=32, max_len=30)
    assert isinstance(model, MoMEModel)
    return model.eval()


def test_mome_exposes_the_albef_interface_and_shapes() -> None:
    m, b = _mome(), random_batch()
    image = m.encode_image(b.images)
    text = m.encode_text(b.input_ids, b.attention_mask)
    assert image.shape == (6, 17, 64) and text.shape == (6, 12, 64)
    assert m.image_feat(image).shape == m.text_feat(text, b.attention_mask).shape == (6, 64)
    assert m.fuse(text, b.attention_mask, image).shape == (6, 12, 64)
    assert m.vision_dim == m.text_dim == 64
    assert isinstance(m.vision_proj, torch.nn.Linear) and isinstance(m.text_proj, torch.nn.Linear)


def test_only_top_layers_hold_a_vl_expert() -> None:
    m = _mome(**{"model.mome.num_layers": 3, "model.mome.num_vl_layers": 1})
    assert [sorted(layer.experts) for layer in m.layers] == [["l", "v"], ["l", "v"],
                                                              ["l", "v", "vl"]]


def _expert_calls(m: MoMEModel) -> dict[str, int]:
    calls: dict[str, int] = {}
    for i, layer in enumerate(m.layers):
        for name, expert in layer.experts.items():
            expert.register_forward_hook(
                lambda *_, k=f"{i}.{name}": calls.__setitem__(k, calls.get(k, 0) + 1))
    return calls


def test_modes_route_tokens_to_their_experts() -> None:
    m, b = _mome(**{"model.mome.num_layers": 3, "model.mome.num_vl_layers": 1}), random_batch()
    calls = _expert_calls(m)
    m.image_feat(m.encode_image(b.images))
    assert calls == {"0.v": 1, "1.v": 1, "2.v": 1}  # dual encoder: V-FFN in every block
    calls.clear()
    m.text_feat(m.encode_text(b.input_ids, b.attention_mask), b.attention_mask)
    assert calls == {"0.l": 1, "1.l": 1, "2.l": 1}
    calls.clear()
    m.fuse(m.encode_text(b.input_ids, b.attention_mask), b.attention_mask,
           m.encode_image(b.images))
    assert calls == {"0.l": 1, "0.v": 1, "1.l": 1, "1.v": 1, "2.vl": 1}


def test_fusion_sees_the_image_and_padding_is_ignored() -> None:
    m, b = _mome(), random_batch()
    text = m.encode_text(b.input_ids, b.attention_mask)
    image = m.encode_image(b.images)
    fused = m.fuse(text, b.attention_mask, image)
    other = m.fuse(text, b.attention_mask, image.roll(1, dims=0))
    assert not torch.allclose(fused[:, 0], other[:, 0])
    # changing padded tokens' embeddings changes nothing at real tokens
    pad = b.attention_mask == 0
    noisy = text.masked_fill(pad[..., None], 3.0)
    keep = b.attention_mask.bool()
    assert torch.allclose(m.fuse(noisy, b.attention_mask, image)[keep], fused[keep], atol=1e-5)
    feat = m.text_feat(text, b.attention_mask)
    assert torch.allclose(m.text_feat(noisy, b.attention_mask), feat, atol=1e-5)


def test_mome_trains_with_itc_itm_mlm() -> None:
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**{"model.arch": "mome"}), VOCAB)
    out = pt(random_batch(), alpha_ramp=1.0, step=0)
    assert set(out.terms) == {"loss_itc", "loss_itm", "loss_mlm"}
    out.loss.backward()
    grads = [p.grad for p in pt.model.layers[-1].experts["vl"].parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_vlmo_spec_matches_parameter_counts_within_ten_percent() -> None:
    expansion = expand(parse_spec(SPEC.read_text()))
    counts = {}
    for variant in expansion.variants:
        cfg = variant.config
        model = build_model(cfg.model, vocab_size=cfg.data.vocab_size,
                            image_size=cfg.data.image_size, max_len=cfg.data.max_text_len)
        counts[cfg.model.arch] = count_parameters(model)
    assert set(counts) == {"albef", "mome"}
    assert counts["mome"] == pytest.approx(counts["albef"], rel=0.10)
