"""MRFR: masked patch feature regression, UNITER's MRFR (Chen et al. 2020, eq. 4) on ViT patches.

Mask a fraction of the patch embeddings (a learned mask token, or zero), predict each masked
patch from the fusion path, and regress onto the un-masked image encoder's states of the same
patches (detached, a fixed target this step): ``L = mean_{masked i, d} (h(v_i^m) - r(v_i))^2``
(elementwise mean, as UNITER's ``F.mse_loss`` averaged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.config.objectives import MRFRConfig
from trainer.objectives.base import Objective, ObjectiveEnv, ObjectiveOutput, register
from trainer.objectives.mpm import masked_patch_states

if TYPE_CHECKING:
    from trainer.model.forward import StepContext


def mrfr_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the masked patches' feature dimensions; ``mask`` is [B,P]."""
    return F.mse_loss(pred[mask].float(), target[mask].float())


class PatchHead(nn.Module):
    """UNITER's region head: dense + GELU + LayerNorm, then a projection to ``out``."""

    def __init__(self, hidden: int, out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.out = nn.Linear(hidden, out)

    def forward(self, h: Tensor) -> Tensor:
        return self.out(self.LayerNorm(F.gelu(self.dense(h))))


@register("mrfr")
class MRFR(Objective):
    cfg: MRFRConfig

    def __init__(self, cfg: MRFRConfig, env: ObjectiveEnv) -> None:
        super().__init__(cfg, env)
        self.head = PatchHead(env.vision_dim, env.vision_dim)
        self.mask_token = (
            nn.Parameter(torch.zeros(env.vision_dim)) if cfg.mask_token == "learned" else None
        )

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        target = ctx.image_states[:, 1:].detach()
        mask, states = masked_patch_states(
            ctx, self.cfg, self.env.vocab, self.env.train.model.vision.patch_size, self.mask_token,
            "mrfr",
        )
        loss = mrfr_loss(self.head(states), target, mask)
        return ObjectiveOutput(loss, {"mrfr_masked_frac": float(mask.float().mean())})
