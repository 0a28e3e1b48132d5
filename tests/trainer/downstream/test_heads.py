"""Task heads: the proposal pooling weights from the geometry of boxes and patches, the
padding of proposals, and the heads' output shapes."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.downstream.heads import (
    AnswerHead,
    EntailmentHead,
    PairHead,
    ProposalHead,
    box_attention,
    patch_box_weights,
)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        # 8 px image, 4 px patches: a 2 x 2 grid, patches in row-major order (ViT's flatten)
        ([0, 0, 4, 4], [1, 0, 0, 0]),            # exactly the top-left patch
        ([4, 4, 8, 8], [0, 0, 0, 1]),            # exactly the bottom-right patch
        ([2, 0, 6, 4], [0.5, 0.5, 0, 0]),        # straddles the top two patches equally
        ([0, 0, 8, 8], [0.25, 0.25, 0.25, 0.25]),  # the whole image
        ([1, 5, 2, 6], [0, 0, 1, 0]),            # inside the bottom-left patch (row 1, col 0)
        ([0, 2, 4, 8], [1 / 3, 0, 2 / 3, 0]),    # 2 px of the top row, 4 px of the bottom
        ([-3, -3, 2, 2], [1, 0, 0, 0]),          # clipped by the image border
    ],
)
def test_patch_weights_are_the_share_of_each_patch_inside_the_box(
    box: list[float], expected: list[float]
) -> None:
    w = patch_box_weights(torch.tensor([[box]], dtype=torch.float32), image_size=8, patch_size=4)
    assert w.shape == (1, 1, 4)
    assert torch.allclose(w[0, 0], torch.tensor(expected, dtype=torch.float32), atol=1e-6)


def test_a_box_outside_every_patch_weights_nothing_rather_than_dividing_by_zero() -> None:
    w = patch_box_weights(torch.tensor([[[9.0, 9.0, 10.0, 10.0]]]), image_size=8, patch_size=4)
    assert torch.isfinite(w).all() and float(w.sum()) == 0.0


def test_padding_proposals_can_never_be_chosen() -> None:
    torch.manual_seed(0)
    head = ProposalHead(6)
    readout = torch.randn(2, 6)
    proposals = torch.randn(2, 3, 6) * 100  # large, so an unmasked pad would win
    valid = torch.tensor([[True, False, False], [True, True, False]])
    with torch.no_grad():
        logits = head(readout, proposals, valid)
    assert logits.shape == (2, 3)
    assert math.isinf(float(logits[0, 1])) and float(logits[0, 1]) < 0
    assert logits.argmax(-1).tolist()[0] == 0
    assert int(logits[1].argmax()) in (0, 1)
    probs = logits.softmax(-1)
    assert float(probs[0, 0]) == pytest.approx(1.0) and float(probs[1, 2]) == 0.0


def test_head_shapes() -> None:
    x = torch.randn(5, 8)
    assert EntailmentHead(8)(x).shape == (5, 3)
    assert AnswerHead(8, 11)(x).shape == (5, 11)
    assert PairHead(8)(x, torch.randn(5, 8)).shape == (5, 2)


def test_box_attention_is_log_density_over_uniform_from_the_expressions_real_words() -> None:
    # 2 x 2 patch grid (P = 4). Word 0 attends only to patch 0, word 1 uniformly, word 2 is
    # padding and attends only to patch 3 (it must be ignored).
    cross = torch.tensor([[[1.0, 0.0, 0.0, 0.0],
                           [0.25, 0.25, 0.25, 0.25],
                           [0.0, 0.0, 0.0, 1.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # per patch over the real words: [0.625, 0.125, 0.125, 0.125]
    boxes = torch.tensor([[[0, 0, 4, 4], [4, 4, 8, 8], [0, 0, 8, 4], [0, 0, 8, 8]]],
                         dtype=torch.float32)
    w = patch_box_weights(boxes, image_size=8, patch_size=4)
    got = box_attention(cross, mask, w)[0]
    expected = [math.log(4 * 0.625), math.log(4 * 0.125), math.log(4 * 0.375),
                math.log(4 * 0.25)]  # the whole image: exactly uniform, log 1 = 0
    assert got.tolist() == pytest.approx(expected, abs=1e-5)
    assert float(got[3]) == pytest.approx(0.0, abs=1e-5)


def test_box_attention_of_a_box_with_no_attention_is_finite() -> None:
    cross = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    w = patch_box_weights(torch.tensor([[[4.0, 4.0, 8.0, 8.0]]]), image_size=8, patch_size=4)
    got = box_attention(cross, torch.tensor([[1]]), w)
    assert torch.isfinite(got).all() and float(got) < -10


def test_the_attention_head_adds_its_scaled_box_attention_and_needs_it() -> None:
    torch.manual_seed(0)
    head = ProposalHead(6, attention=True)
    readout, proposals = torch.randn(1, 6), torch.randn(1, 2, 6)
    valid = torch.ones(1, 2, dtype=torch.bool)
    plain = ProposalHead(6)
    plain.load_state_dict({k: v for k, v in head.state_dict().items()
                           if k != "attention_scale"})
    with torch.no_grad():
        base = plain(readout, proposals, valid)
        got = head(readout, proposals, valid, torch.tensor([[2.0, -1.0]]))
    assert (got - base)[0].tolist() == pytest.approx([2.0, -1.0], abs=1e-6)  # scale starts at 1
    with pytest.raises(ValueError, match="box attention"):
        head(readout, proposals, valid)
