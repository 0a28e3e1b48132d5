"""IAIS: intra-modal self-attention relation alignment (Ren et al., ACL 2021, "Learning Relation
Alignment for Calibrated Cross-modal Retrieval", sec. 3).

The relations between words (the language self-attention ``A^L`` [L,L]) should agree with the
relations between the image regions the words align to (the visual self-attention ``A^V``
[N,N]). With the word->image alignment ``A^{LV}`` [L,N] (cross-attention, or the text->image
block of a single-stream layer), ``A^V`` is projected into the linguistic space:

- ``singular``: each word takes its most attended image token ``m(i) = argmax_j A^{LV}_ij``
  and ``Â_ik = A^V_{m(i) m(k)}`` (the paper's singular alignment);
- ``distributed``: ``Â = A^{LV} A^V (A^{LV})^T`` (every word spreads over image tokens);

``Â`` is renormalised over the caption's tokens and the regulariser is the symmetric KL
``mean_i [KL(A^L_i || Â_i) + KL(Â_i || A^L_i)]`` over real (non-padding) words, on head-averaged
maps of the layer the model exposes (ALBEF: last fusion layer + last ViT layer; MoME: the last
fusion block's one self-attention). SDPA returns no maps, so they are computed explicitly, only
when on.

Checked against the authors' code (lancopku/IAIS, ``UniterEncoder.iais_*``): it sums both KL
directions, as here. Where this module differs, on purpose: the authors' singular variant
re-applies a softmax to the gathered attention probabilities (here: renormalised, so Â keeps
the image's relative weights), their distributed variant uses ``A^{LV} A^{VL}`` (here the
image's own relations sit in between, which is what "visual relations" means in the paper's
text), and they drop [CLS]/[SEP] rows (here only padding is dropped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from trainer.config.objectives import IAISConfig
from trainer.objectives.base import (
    Objective,
    ObjectiveEnv,
    ObjectiveOutput,
    register,
)

if TYPE_CHECKING:
    from trainer.model.forward import StepContext


def project_singular(a_image: Tensor, a_cross: Tensor) -> Tensor:
    """``Â_ik = A^V[m(i), m(k)]`` with ``m(i) = argmax_j A^{LV}_ij``: [B,N,N],[B,L,N] -> [B,L,L]."""
    m = a_cross.argmax(dim=-1)  # [B,L]
    n = a_image.shape[-1]
    rows = a_image.gather(1, m[:, :, None].expand(-1, -1, n))  # [B,L,N]: row m(i)
    return rows.gather(2, m[:, None, :].expand(-1, m.shape[1], -1))


def project_distributed(a_image: Tensor, a_cross: Tensor) -> Tensor:
    """``Â = A^{LV} A^V (A^{LV})^T``: [B,L,L]."""
    return a_cross @ a_image @ a_cross.transpose(1, 2)


def iais_loss(a_text: Tensor, projected: Tensor, text_mask: Tensor, eps: float = 1e-8) -> Tensor:
    """``mean_i [KL(A^L_i || Â_i) + KL(Â_i || A^L_i)]`` over real words, both renormalised over
    real words (the authors sum both directions: neither modality is the fixed target)."""
    keys = text_mask[:, None, :].to(projected.dtype)

    def over_words(m: Tensor) -> Tensor:
        m = m.float() * keys
        return m / m.sum(-1, keepdim=True).clamp_min(eps)

    a, p = over_words(a_text), over_words(projected)
    # x * log(x) with x clamped inside the log: finite gradients where attention is exactly 0
    log_a, log_p = torch.log(a.clamp_min(eps)), torch.log(p.clamp_min(eps))
    kl = (a * (log_a - log_p)).sum(-1) + (p * (log_p - log_a)).sum(-1)  # [B,L]
    rows = text_mask.bool()
    return kl[rows].mean()


@register("iais")
class IAIS(Objective):
    cfg: IAISConfig

    def __init__(self, cfg: IAISConfig, env: ObjectiveEnv) -> None:
        super().__init__(cfg, env)

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        maps = ctx.relation_maps
        project = project_singular if self.cfg.variant == "singular" else project_distributed
        loss = iais_loss(maps.text, project(maps.image, maps.cross), ctx.batch.attention_mask)
        return ObjectiveOutput(loss, {})
