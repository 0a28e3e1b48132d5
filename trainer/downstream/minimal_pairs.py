"""Zero-shot minimal-pair probe (Winoground-style) over the benchmark's own minimal pairs.

About half of `shapes`' images come in pairs that differ in one binding or fact (colours or
shapes swapped between two objects, two objects exchanging places, one attribute changed), and
every caption of either image is false for its partner. Each pair is one Winoground group:
captions c0, c1 (the first caption of each image) against images i0, i1. It is scored by ITM's
match log-odds where the trial trained ITM, else by ITC's cosine similarity, and the result
names the protocol, since the two are not the same measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trainer.data.types import ImageTextSplit
from trainer.downstream.metrics import minimal_pair_scores
from trainer.model.pretrainer import Pretrainer


@dataclass(frozen=True)
class MinimalPairResult:
    metrics: dict[str, float]
    """``text``, ``image``, ``group`` (fractions, chance 1/4, 1/4, 1/6) and ``groups``."""
    protocol: str
    """"itm" or "itc"."""


def pair_groups(split: ImageTextSplit) -> list[tuple[int, int, int, int]]:
    """(image 0, image 1, caption of 0, caption of 1) per minimal pair: groups with exactly two
    images, each caption the first one its image owns."""
    assert split.image_group is not None, "minimal pairs need the benchmark's pair groups"
    first: dict[int, int] = {}
    for c, i in enumerate(split.caption_image.tolist()):
        first.setdefault(int(i), c)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(split.image_group.tolist()):
        members.setdefault(int(g), []).append(i)
    return [(a, b, first[a], first[b]) for group in members.values() if len(group) == 2
            for a, b in [group] if a in first and b in first]


@torch.no_grad()
def score_minimal_pairs(
    pretrainer: Pretrainer,
    split: ImageTextSplit,
    input_ids: Tensor,
    attention_mask: Tensor,
    *,
    device: torch.device,
) -> MinimalPairResult:
    """Score every group's 2 x 2 (caption, image) matrix and return Winoground's scores."""
    groups = pair_groups(split)
    if not groups:
        raise ValueError("minimal pairs: the split has no minimal pairs to score")
    was_training = pretrainer.training
    pretrainer.eval()
    model = pretrainer.model
    g = torch.tensor(groups, dtype=torch.long)
    images = g[:, :2].reshape(-1)  # i0, i1 per group
    captions = g[:, 2:].reshape(-1)  # c0, c1 per group
    image_embeds = model.encode_image(split.load_images(images).to(device))
    length = int(attention_mask[captions].sum(dim=1).max())
    ids = input_ids[captions, :length].to(device)
    mask = attention_mask[captions, :length].to(device)
    text_embeds = model.encode_text(ids, mask)
    n = len(groups)
    # rows of the [G, 2 captions, 2 images] matrices: caption 2g + c against image 2g + i
    c_idx = torch.tensor([2 * k + c for k in range(n) for c in (0, 1) for _ in (0, 1)])
    i_idx = torch.tensor([2 * k + i for k in range(n) for _ in (0, 1) for i in (0, 1)])
    if "itm" in pretrainer.objectives:
        protocol = "itm"
        scores = pretrainer.itm_scores(text_embeds[c_idx], mask[c_idx], image_embeds[i_idx])
    else:
        protocol = "itc"
        t = model.text_feat(text_embeds, mask)
        v = model.image_feat(image_embeds)
        scores = (t[c_idx] * v[i_idx]).sum(-1)
    pretrainer.train(was_training)
    result = minimal_pair_scores(scores.float().view(n, 2, 2).cpu().numpy())
    return MinimalPairResult(
        {"text": result.text, "image": result.image, "group": result.group,
         "groups": float(n)}, protocol)
