"""WRA: word-patch alignment by optimal transport, UNITER's WRA (Chen et al. 2020, sec. 3.1,
eq. 7) with the IPOT solver (Xie et al. 2019, Alg. 1) on ViT patches.

Cost ``C_ij = 1 - cos(w_i, v_j)`` between the contextual (fused) word states and patch states
of a pair ([CLS] tokens and padding excluded); the transport plan ``T`` comes from IPOT on the
detached cost (``beta`` proximal weight, ``iterations`` outer steps, ``k`` inner Sinkhorn
steps, uniform marginals); the distance is ``<C, T>``. It is minimised for matched pairs and
maximised for mismatched ones: ``L = (sum_pos D - sum_neg D) / (n_pos + n_neg)`` (UNITER's
``ot_loss``).

Pairs: WRA draws its own, like ITM without hard negatives: the batch's positives plus one
uniformly drawn negative image per caption (never one showing the same image). So it runs with
or without ITM, and its compute (one fusion pass over 2B pairs) is its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.config.objectives import WRAConfig
from trainer.objectives.base import (
    Objective,
    ObjectiveEnv,
    ObjectiveOutput,
    register,
)
from trainer.objectives.itm import negative_weights, sample_negatives

if TYPE_CHECKING:
    from trainer.model.forward import StepContext


def cosine_cost(x: Tensor, y: Tensor) -> Tensor:
    """[B,M,D] x [B,N,D] -> [B,M,N] cost ``1 - cos``."""
    return 1 - F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).transpose(1, 2)


@torch.no_grad()
def ipot(cost: Tensor, x_mask: Tensor, y_mask: Tensor, beta: float, iterations: int, k: int
         ) -> Tensor:
    """IPOT's transport plan [B,M,N] between uniform measures on the valid rows (``x_mask``
    [B,M]) and columns (``y_mask`` [B,N]); zero on padding. Rows sum to 1/m, columns to 1/n."""
    cost = cost.float()
    xm, ym = x_mask.float(), y_mask.float()
    mu = xm / xm.sum(1, keepdim=True)  # [B,M] marginals
    nu = ym / ym.sum(1, keepdim=True)
    joint = xm[:, :, None] * ym[:, None, :]
    a = torch.exp(-cost / beta) * joint  # the proximal kernel G
    plan = joint.clone()
    sigma = ym / ym.sum(1, keepdim=True).clamp_min(1)
    for _ in range(iterations):
        q = a * plan
        for _ in range(k):
            delta = mu / (q @ sigma[..., None]).squeeze(-1).clamp_min(1e-30)
            sigma = nu / (delta[:, None, :] @ q).squeeze(1).clamp_min(1e-30)
        plan = delta[..., None] * q * sigma[:, None, :]
    return plan * joint


def ot_distance(
    words: Tensor, word_mask: Tensor, patches: Tensor, patch_mask: Tensor,
    beta: float = 0.5, iterations: int = 50, k: int = 1,
) -> Tensor:
    """[B] ``<C, T>``: gradients flow through the cost, the plan is a constant (as UNITER)."""
    cost = cosine_cost(words.float(), patches.float())
    plan = ipot(cost.detach(), word_mask, patch_mask, beta, iterations, k)
    return (cost * plan).sum(dim=(1, 2))


def wra_loss(distance: Tensor, matched: Tensor) -> Tensor:
    """UNITER's ot_loss: (sum over matched - sum over mismatched) / number of pairs."""
    return (distance[matched].sum() - distance[~matched].sum()) / distance.numel()


@register("wra")
class WRA(Objective):
    cfg: WRAConfig

    def __init__(self, cfg: WRAConfig, env: ObjectiveEnv) -> None:
        super().__init__(cfg, env)

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        b = ctx.batch
        text, image, mask = ctx.text_embeds, ctx.image_embeds, b.attention_mask
        with torch.no_grad():
            rows, neg = sample_negatives(negative_weights(None, ctx.positives, 1.0),
                                         ctx.generator("wra"))
        text_states, image_states = ctx.model.fuse_pair(
            torch.cat([text, text[rows]]), torch.cat([mask, mask[rows]]),
            torch.cat([image, image[neg]]),
        )
        word_mask = torch.cat([mask, mask[rows]]).bool().clone()
        word_mask[:, 0] = False  # [CLS]
        patch_mask = torch.ones(image_states.shape[:2], dtype=torch.bool,
                                device=image_states.device)
        patch_mask[:, 0] = False  # image [CLS]
        dist = ot_distance(text_states, word_mask, image_states, patch_mask,
                           self.cfg.beta, self.cfg.iterations, self.cfg.k)
        matched = torch.zeros(len(dist), dtype=torch.bool, device=dist.device)
        matched[: len(b)] = True
        loss = wra_loss(dist, matched)
        gap = dist[~matched].mean() - dist[matched].mean() if (~matched).any() else dist.sum() * 0
        return ObjectiveOutput(loss, {"wra_ot_gap": float(gap.detach())})
