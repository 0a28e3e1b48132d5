"""``init.fusion``: the warm start's text stage also trains the fusion layers as BERT layers
(ALBEF's fusion starts from BERT-base's layers 6-11). The reference for "a fusion layer without
its cross-attention is a BERT layer" is transformers' own ``BertLayer`` with the same weights."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer

from tests.trainer.test_warm_start import config
from trainer.loop import Trainer
from trainer.model.fusion import FusionLayer
from trainer.warm_start import ensure_warm_start, warm_start_key


def test_a_fusion_layer_without_the_image_is_transformers_bert_layer() -> None:
    torch.manual_seed(0)
    bert_cfg = BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                          layer_norm_eps=1e-12, hidden_act="gelu")
    bert = BertLayer(bert_cfg).eval()
    ours = FusionLayer(32, 4, 64, image_dim=32, dropout=0.0).eval()
    missing = ours.load_state_dict(bert.state_dict(), strict=False)
    assert missing.unexpected_keys == []
    assert all(k.startswith("crossattention.") for k in missing.missing_keys)
    x = torch.randn(3, 7, 32)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    extended = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    with torch.no_grad():
        want = bert(x, attention_mask=extended)
        want = want[0] if isinstance(want, tuple) else want
        got = ours(x, mask, None, None)
    keep = mask.bool()
    assert torch.allclose(got[keep], want[keep], atol=1e-5)


def test_the_key_covers_init_fusion(tmp_path: Path) -> None:
    assert warm_start_key(config(tmp_path)) != warm_start_key(
        config(tmp_path, **{"init.fusion": True}))


def test_the_fusion_stage_trains_self_attention_and_ffn_not_cross_attention(tmp_path: Path
                                                                           ) -> None:
    plain = ensure_warm_start(config(tmp_path, **{"init.fusion": False}))
    assert not any(n.startswith("fusion.") for n in plain.state)
    warm = ensure_warm_start(config(tmp_path, **{"init.fusion": True}))
    fusion = {n for n in warm.state if n.startswith("fusion.")}
    assert "fusion.layer.0.attention.self.query.weight" in fusion
    assert "fusion.layer.1.intermediate.dense.weight" in fusion
    assert "fusion.layer.1.output.LayerNorm.weight" in fusion
    assert not any(".crossattention." in n for n in fusion)
    # two seeds share the trained fusion layers and keep their own cross-attention
    cfg = config(tmp_path, **{"init.fusion": True})
    a = Trainer(cfg, 0, checkpoint_dir=None)
    b = Trainer(cfg, 1, checkpoint_dir=None, benchmark=a.bench)
    pa = dict(a.pretrainer.model.named_parameters())
    pb = dict(b.pretrainer.model.named_parameters())
    for name in fusion:
        assert torch.equal(pa[name], warm.state[name]) and torch.equal(pb[name], pa[name]), name
    cross = "fusion.layer.0.crossattention.self.query.weight"
    assert not torch.equal(pa[cross], pb[cross])
