"""ITC feature pooling: [CLS] (ALBEF) or the mean of the content tokens."""

from __future__ import annotations

import torch

from tests.trainer.helpers import VOCAB, random_batch, tiny
from trainer.model.albef import ALBEFModel
from trainer.model.pooling import pool_image, pool_tokens


def test_masked_mean_averages_only_kept_tokens() -> None:
    states = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])  # [1,3,2]
    mask = torch.tensor([[1, 1, 0]])
    assert pool_tokens(states, "mean", mask).tolist() == [[2.0, 1.0]]
    assert pool_tokens(states, "cls", mask).tolist() == [[1.0, 0.0]]
    assert torch.allclose(pool_tokens(states, "mean"), torch.tensor([[104 / 3, 34.0]]))


def test_image_mean_leaves_the_cls_slot_out() -> None:
    states = torch.tensor([[[50.0], [1.0], [3.0]]])
    assert pool_image(states, "mean").tolist() == [[2.0]]
    assert pool_image(states, "cls").tolist() == [[50.0]]


def _feature_spread(pooling: str) -> tuple[float, float]:
    torch.manual_seed(0)
    cfg = tiny(**{"model.text.pooling": pooling, "model.vision.pooling": pooling})
    model = ALBEFModel(cfg.model, vocab_size=VOCAB.size, image_size=32, max_len=30).eval()
    b = random_batch(16)
    with torch.no_grad():
        t = model.text_feat(model.encode_text(b.input_ids, b.attention_mask), b.attention_mask)
        i = model.image_feat(model.encode_image(b.images))
    return float(t.std(dim=0).mean()), float(i.std(dim=0).mean())


def test_mean_pooled_features_differ_across_inputs_at_init() -> None:
    """Why the tiny preset pools by mean: at random init [CLS] barely depends on the input."""
    cls_text, cls_image = _feature_spread("cls")
    mean_text, mean_image = _feature_spread("mean")
    assert mean_text > 3 * cls_text
    assert mean_image > 3 * cls_image
