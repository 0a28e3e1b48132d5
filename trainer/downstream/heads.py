"""The task heads that fine-tuning puts on the pretrained trunk, after the papers' designs.

Each head reads the fusion encoder (the part ITM, MLM and their variants train), so a
component that makes the fusion better shows up in the head's accuracy:

- ``EntailmentHead``: ALBEF's SNLI-VE head, Linear(d, d) -> ReLU -> Linear(d, 3) on the fused
  readout of (image, hypothesis);
- ``AnswerHead``: VQA as classification over the closed answer list, as UNITER, ViLT and VLMo
  do: Linear(d, 2d) -> LayerNorm -> GELU -> Linear(2d, answers) on the fused readout;
- ``PairHead``: NLVR as ViLT's and VLMo's two passes: the statement fused with each image
  separately, the two readouts concatenated, Linear(2d, 2d) -> LayerNorm -> GELU ->
  Linear(2d, 2). (ALBEF instead alternates cross-attention between the two images inside the
  fusion layers, which needs an extra pretraining stage; the two-pass design reads the same
  fusion encoder every architecture here has, with no new layers inside it);
- ``ProposalHead``: grounding over given proposals (the objects' boxes), as UNITER scores its
  region tokens: each proposal is the mean of the patch states its box covers (the image
  encoder's, or the image-side fused ones), scored by Linear(d, d) -> GELU -> Linear(d, 1)
  against the expression's fused readout.

"The fused readout" is ``model.text.fusion_readout``: the fused [CLS] (ALBEF) or the mean of
the caption's fused states, the same readout ITM uses.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def answer_mlp(dim: int, out: int) -> nn.Sequential:
    """UNITER's and ViLT's classifier: widen to 2d, LayerNorm, GELU, project."""
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.LayerNorm(2 * dim), nn.GELU(),
                         nn.Linear(2 * dim, out))


class EntailmentHead(nn.Module):
    """ALBEF's ``cls_head`` for SNLI-VE: entailment, neutral, contradiction."""

    def __init__(self, dim: int, classes: int = 3) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, classes))

    def forward(self, readout: Tensor) -> Tensor:
        return self.mlp(readout)


class AnswerHead(nn.Module):
    """VQA over a closed answer list: one logit per answer."""

    def __init__(self, dim: int, answers: int) -> None:
        super().__init__()
        self.mlp = answer_mlp(dim, answers)

    def forward(self, readout: Tensor) -> Tensor:
        return self.mlp(readout)


class PairHead(nn.Module):
    """NLVR's two-pass head: readouts of (statement, left) and (statement, right), joined."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = answer_mlp(2 * dim, 2)

    def forward(self, left: Tensor, right: Tensor) -> Tensor:
        return self.mlp(torch.cat([left, right], dim=-1))


class ProposalHead(nn.Module):
    """One score per proposal: its pooled patch states against the expression; with
    ``attention``, plus a learned multiple of how much more than uniform the expression's
    cross-attention lands in the box (the signal ALBEF's Grad-CAM grounding ranks by)."""

    def __init__(self, dim: int, attention: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.score = nn.Sequential(nn.GELU(), nn.Linear(dim, 1))
        self.attention_scale = nn.Parameter(torch.ones(())) if attention else None

    def forward(self, readout: Tensor, proposals: Tensor, valid: Tensor,
                attention: Tensor | None = None) -> Tensor:
        """``readout`` [B,D], ``proposals`` [B,K,D], ``valid`` [B,K] bool, ``attention``
        [B,K] (log box attention over uniform) -> logits [B,K] (padding proposals at -inf,
        so a softmax over K never picks them)."""
        logits = self.score(self.proj(proposals) + readout[:, None, :]).squeeze(-1)
        if self.attention_scale is not None:
            if attention is None:
                raise ValueError("ProposalHead(attention=True) needs the box attention")
            logits = logits + self.attention_scale * attention
        return logits.masked_fill(~valid, float("-inf"))


def box_attention(cross: Tensor, text_mask: Tensor, weights: Tensor) -> Tensor:
    """log(P * mean attention per patch inside each box): 0 where the expression's
    cross-attention is uniform over the P patches, positive where it gathers in the box.
    ``cross`` [B,L,P] word -> patch attention, ``text_mask`` [B,L], ``weights`` [B,K,P] from
    ``patch_box_weights`` -> [B,K]. Words are averaged over the expression's real tokens."""
    m = text_mask.to(cross.dtype)
    per_patch = (cross * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)
    density = weights.to(cross.dtype) @ per_patch[..., None]  # [B,K,1]
    return torch.log(density.squeeze(-1) * cross.shape[-1] + 1e-6)


def patch_box_weights(boxes: Tensor, image_size: int, patch_size: int) -> Tensor:
    """[B,K,4] pixel boxes (x1, y1, x2, y2) -> [B,K,P] weights over the patch grid: the share
    of each patch's area inside the box, rows normalised to sum to 1 (a box inside one patch
    still gets that patch). The fused image states of a proposal are their weighted mean."""
    grid = image_size // patch_size
    edges = torch.arange(grid + 1, dtype=torch.float32, device=boxes.device) * patch_size
    lo, hi = edges[:-1], edges[1:]

    def overlap(a: Tensor, b: Tensor) -> Tensor:  # [B,K] -> [B,K,grid]
        return (torch.minimum(b[..., None], hi) - torch.maximum(a[..., None], lo)).clamp_min(0)

    ox = overlap(boxes[..., 0].float(), boxes[..., 2].float())
    oy = overlap(boxes[..., 1].float(), boxes[..., 3].float())
    area = oy[..., :, None] * ox[..., None, :]  # [B,K,rows,cols]: row = y, col = x
    flat = area.flatten(-2)
    return flat / flat.sum(-1, keepdim=True).clamp_min(1e-9)
