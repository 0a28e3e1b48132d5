"""VILLA: adversarial training in the embedding space of one modality at a time (Gan et al.
2020, sec. 3.2, eq. 2-3), as a pretraining term on image-text matching.

On each step a perturbation ``delta`` is added to the patch embeddings (image) or the word
embeddings (text) of the ITM pairs (the batch's positives plus one uniformly drawn negative
image per caption). ``adv_steps`` K of projected gradient ascent (step ``adv_lr`` along the
per-token L2-normalised gradient, each token's delta projected onto the L2 ball of radius
``epsilon``) maximise the adversarial objective; the term is then

    L = CE(ITM(x + delta), y) + kl_weight * (KL(p_clean || p_adv) + KL(p_adv || p_clean))

with ``p`` the ITM head's softmax (ITM's own head: needs ``objectives.itm``). The consistency
is on ITM logits only; MLM predictions are not perturbed (documented limit).

Deviation: VILLA (like FreeLB) accumulates parameter gradients over the K ascent steps; here the
ascent only computes gradients with respect to ``delta`` (PGD, Madry et al.) and the parameters
learn from the final perturbation, which keeps one loss per objective. ``modality: alternate``
perturbs images on even steps and text on odd steps. Extra compute is logged per step:
``villa_extra_forwards`` (fusion passes: 1 clean + K ascent + 1 final), ``villa_extra_backwards``
(K ascent backward passes) and ``villa_seconds`` (wall time of the term).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from trainer.objectives.base import (
    Objective,
    ObjectiveConfig,
    ObjectiveEnv,
    ObjectiveOutput,
    register,
)
from trainer.objectives.itm import negative_weights, sample_negatives

if TYPE_CHECKING:
    from collections.abc import Callable

    from trainer.model.forward import StepContext


class VILLAConfig(ObjectiveConfig):
    modality: Literal["image", "text", "alternate"] = "alternate"
    adv_steps: int = Field(default=2, ge=1, description="K: projected gradient ascent steps")
    epsilon: float = Field(default=1.0, gt=0.0, description="L2 bound of each token's delta")
    adv_lr: float = Field(default=0.1, gt=0.0, description="ascent step size")
    init_mag: float = Field(default=0.01, ge=0.0, description="scale of the random start")
    kl_weight: float = Field(default=1.0, ge=0.0, description="weight of the consistency KL")


def project_l2(delta: Tensor, epsilon: float) -> Tensor:
    """Scale each token's vector (last dim) back into the L2 ball of radius ``epsilon``."""
    norm = delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return delta * (epsilon / norm).clamp(max=1.0)


def ascent_step(delta: Tensor, grad: Tensor, lr: float, epsilon: float) -> Tensor:
    """``proj(delta + lr * g / ||g||)`` with per-token norms (FreeLB/VILLA's L2 update)."""
    g = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return project_l2(delta + lr * g, epsilon)


def symmetric_kl(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """``KL(p||q) + KL(q||p)`` of the rows' softmaxes, averaged over rows."""
    lp, lq = F.log_softmax(logits_p.float(), -1), F.log_softmax(logits_q.float(), -1)
    return ((lp.exp() - lq.exp()) * (lp - lq)).sum(-1).mean()


def adversarial_loss(adv: Tensor, clean: Tensor, labels: Tensor, kl_weight: float) -> Tensor:
    return F.cross_entropy(adv.float(), labels) + kl_weight * symmetric_kl(clean, adv)


def pgd(
    loss_fn: Callable[[Tensor], Tensor], delta: Tensor, steps: int, lr: float, epsilon: float
) -> Tensor:
    """K steps of projected ascent on ``loss_fn(delta)``; gradients w.r.t. delta only."""
    for _ in range(steps):
        delta = delta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(delta), delta)
        delta = ascent_step(delta.detach(), grad, lr, epsilon)
    return delta.detach()


@register("villa", VILLAConfig)
class VILLA(Objective):
    def __init__(self, cfg: VILLAConfig, env: ObjectiveEnv) -> None:
        super().__init__(cfg, env)
        if not env.train.objectives.itm.enabled:
            from trainer.config import ConfigError  # trainer.config imports this package

            raise ConfigError(
                "objectives.villa.enabled", "VILLA's consistency term reads ITM's head: enable "
                "objectives.itm too",
            )

    def modality(self, step: int) -> str:
        if self.cfg.modality != "alternate":
            return self.cfg.modality
        return "image" if step % 2 == 0 else "text"

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        start = time.perf_counter()
        b, model, head = ctx.batch, ctx.model, ctx.objectives["itm"].head
        with torch.no_grad():
            rows, neg = sample_negatives(negative_weights(None, ctx.positives, 1.0))
        pair_text = torch.cat([torch.arange(len(b), device=rows.device), rows])
        pair_image = torch.cat([torch.arange(len(b), device=neg.device), neg])
        mask = b.attention_mask[pair_text]
        text, image = ctx.text_embeds[pair_text], ctx.image_embeds[pair_image]
        labels = (torch.arange(len(pair_text), device=mask.device) < len(b)).long()
        clean = head(model.fuse(text, mask, image)[:, 0])
        modality = self.modality(ctx.step)

        def logits(delta: Tensor) -> Tensor:
            if modality == "image":
                adv = model.encode_image(b.images[pair_image], image_delta=delta)
                return head(model.fuse(text, mask, adv)[:, 0])
            ids = b.input_ids[pair_text]
            adv = model.encode_text(ids, mask, text_delta=delta * mask[..., None])
            return head(model.fuse(adv, mask, image)[:, 0])

        if modality == "image":
            shape = (len(pair_image), image.shape[1] - 1, model.vision_dim)
        else:
            shape = (len(pair_text), mask.shape[1], model.text_dim)
        dim = shape[-1]
        delta = (torch.rand(shape, device=mask.device) * 2 - 1) * self.cfg.init_mag / math.sqrt(dim)
        target = clean.detach()
        delta = pgd(lambda d: adversarial_loss(logits(d), target, labels, self.cfg.kl_weight),
                    delta, self.cfg.adv_steps, self.cfg.adv_lr, self.cfg.epsilon)
        loss = adversarial_loss(logits(delta), clean, labels, self.cfg.kl_weight)
        k = self.cfg.adv_steps
        return ObjectiveOutput(loss, {
            "villa_extra_forwards": float(k + 2),
            "villa_extra_backwards": float(k),
            "villa_seconds": time.perf_counter() - start,
            "villa_delta_norm": float(delta.norm(dim=-1).mean()),
        })
