"""What ITM's head reads off the fusion encoder (``model.text.fusion_readout``), rebuilt by
hand: the fused [CLS] row, or the mean of the fused states over the caption's own tokens
(padding never counts), fed to the head's affine map ``W r + b``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.trainer.helpers import VOCAB, random_batch, tiny
from trainer.model.pretrainer import Pretrainer
from trainer.objectives.itm import ITM


def _itm(readout: str) -> ITM:
    itm = Pretrainer(tiny(**{"model.text.fusion_readout": readout}), VOCAB).objectives["itm"]
    assert isinstance(itm, ITM)
    return itm.requires_grad_(False)


def _hand_logits(itm: ITM, fused: np.ndarray, mask: np.ndarray, readout: str) -> np.ndarray:
    w = itm.head.weight.numpy().astype(np.float64)
    b = itm.head.bias.numpy().astype(np.float64)
    rows = []
    for states, keep in zip(fused, mask, strict=True):
        if readout == "cls":
            r = states[0]
        else:
            kept = [states[j] for j in range(len(keep)) if keep[j] == 1]
            r = sum(kept) / len(kept)
        rows.append(w @ r + b)
    return np.array(rows)


@pytest.mark.parametrize("readout", ["cls", "mean"])
def test_the_head_reads_the_configured_state(readout: str) -> None:
    itm = _itm(readout)
    gen = torch.Generator().manual_seed(0)
    fused = torch.randn(3, 5, itm.head.in_features, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    fused[mask == 0] = 1e4  # padding states that must not count
    got = itm.logits(fused, mask).double().numpy()
    want = _hand_logits(itm, fused.double().numpy(), mask.numpy(), readout)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_a_one_token_caption_reads_that_token_either_way() -> None:
    cls, mean = _itm("cls"), _itm("mean")
    mean.head.load_state_dict(cls.head.state_dict())
    fused = torch.randn(2, 4, cls.head.in_features)
    mask = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0]])
    assert torch.allclose(cls.logits(fused, mask), mean.logits(fused, mask))


def test_the_training_step_and_retrieval_read_the_same_readout() -> None:
    """Retrieval's ITM score of a pair is the margin of the logits the loss trains."""
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**{"model.text.fusion_readout": "mean"}), VOCAB).eval()
    batch = random_batch(4)
    image = pt.model.encode_image(batch.images)
    text = pt.model.encode_text(batch.input_ids, batch.attention_mask)
    itm = pt.objectives["itm"]
    assert isinstance(itm, ITM)
    with torch.no_grad():
        logits = itm.logits(pt.model.fuse(text, batch.attention_mask, image),
                            batch.attention_mask)
        scores = pt.itm_scores(text, batch.attention_mask, image)
    assert torch.allclose(scores, logits[:, 1] - logits[:, 0], atol=1e-6)
