"""VILLA: adversarial training in the embedding space of one modality at a time (Gan et al.
2020, sec. 3.2, eq. 2-3), as a pretraining term on image-text matching and masked language
modelling (VILLA perturbs every pretraining task; ``tasks`` picks among ITM and MLM).

On each step a perturbation ``delta`` is added to the patch embeddings (image) or the word
embeddings (text) of each task's inputs: for ITM the batch's positives plus one uniformly drawn
negative image per caption; for MLM the batch's pairs with a fresh BERT masking of the caption.
``adv_steps`` K of projected gradient ascent (step ``adv_lr`` along the per-token
L2-normalised gradient, each token's delta projected onto the L2 ball of radius ``epsilon``)
maximise the adversarial objective; with ``epsilon_scale: embedding_norm`` the radius, the step
and the random start are fractions of each token's own embedding norm instead (VILLA's absolute
radii assume pretrained embeddings with norms near 1; BERT's random init gives 0.02 * sqrt(d)).
The term of each task is then

    L = CE(f(x + delta), y) + kl_weight * (KL(p_clean || p_adv) + KL(p_adv || p_clean))

with ``p`` the task head's softmax: ITM's match head over the pairs, MLM's vocabulary head over
the masked tokens (the tasks' own heads: ``objectives.itm`` / ``objectives.mlm`` must be on).
The terms of the tasks are summed.

Deviation: VILLA (like FreeLB) accumulates parameter gradients over the K ascent steps; here the
ascent only computes gradients with respect to ``delta`` (PGD, Madry et al.) and the parameters
learn from the final perturbation, which keeps one loss per objective. ``modality: alternate``
perturbs images on even steps and text on odd steps. Extra compute is logged per step:
``villa_extra_forwards`` (fusion passes: per task 1 clean + K ascent + 1 final),
``villa_extra_backwards`` (K ascent backward passes per task) and ``villa_seconds`` (wall time
of the term).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.config.objectives import VILLAConfig
from trainer.objectives.base import (
    Objective,
    ObjectiveEnv,
    ObjectiveOutput,
    register,
    require,
)
from trainer.objectives.itm import ITM, negative_weights, sample_negatives
from trainer.objectives.mlm import IGNORE, MLM, mask_tokens

if TYPE_CHECKING:
    from collections.abc import Callable

    from trainer.model.forward import StepContext


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None,
             device: torch.device) -> Tensor:
    """U[0,1) noise of ``shape`` on ``device``, drawn on the CPU when a stream is given."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator).to(device)


def project_l2(delta: Tensor, epsilon: float | Tensor) -> Tensor:
    """Scale each token's vector (last dim) back into the L2 ball of radius ``epsilon``."""
    norm = delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return delta * (epsilon / norm).clamp(max=1.0)


def ascent_step(delta: Tensor, grad: Tensor, lr: float | Tensor, epsilon: float | Tensor
                ) -> Tensor:
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
    loss_fn: Callable[[Tensor], Tensor], delta: Tensor, steps: int, lr: float | Tensor,
    epsilon: float | Tensor,
) -> Tensor:
    """K steps of projected ascent on ``loss_fn(delta)``; gradients w.r.t. delta only.
    ``lr`` and ``epsilon`` may be per-token tensors ([N,T,1])."""
    for _ in range(steps):
        delta = delta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(delta), delta)
        delta = ascent_step(delta.detach(), grad, lr, epsilon)
    return delta.detach()


@dataclass
class PerturbedInput:
    """One modality's embeddings, open to a perturbation ``delta`` [N,T,D]."""

    fused: Callable[[Tensor], Tensor]
    """delta -> fused states."""
    delta_shape: tuple[int, ...]
    norms: Tensor
    """[N,T,1] L2 norms of the embeddings delta is added to (no gradient)."""
    valid: Tensor
    """[N,T,1] 1 where delta reaches the model, 0 on text padding."""

    def mean(self, per_token: Tensor) -> float:
        """Mean of a [N,T,1] quantity over the tokens delta reaches."""
        return float((per_token * self.valid).sum() / self.valid.sum().clamp_min(1))


@dataclass
class AdversarialTask:
    """One task's adversarial problem: logits as a function of the perturbation."""

    clean: Tensor
    """[N,K] logits on the clean inputs (in the graph: the KL term trains them too)."""
    labels: Tensor
    """[N] targets of the rows."""
    logits: Callable[[Tensor], Tensor]
    """delta -> [N,K] logits on the perturbed inputs."""
    inputs: PerturbedInput


def perturbed_forward(
    ctx: StepContext, modality: str, text_ids: Tensor, text_mask: Tensor, text: Tensor,
    images: Tensor, image: Tensor,
) -> PerturbedInput:
    """One modality's embeddings perturbed: the patch embeddings of ``images`` or the word
    embeddings of ``text_ids``."""
    model = ctx.model
    if modality == "image":
        def fused_image(delta: Tensor) -> Tensor:
            return model.fuse(text, text_mask, model.encode_image(images, image_delta=delta))

        with torch.no_grad():
            patches = model.patch_embeddings(images)
        norms = patches.norm(dim=-1, keepdim=True)
        return PerturbedInput(fused_image, tuple(patches.shape), norms, torch.ones_like(norms))

    valid = text_mask[..., None].to(text.dtype)

    def fused_text(delta: Tensor) -> Tensor:
        adv = model.encode_text(text_ids, text_mask, text_delta=delta * valid)
        return model.fuse(adv, text_mask, image)

    with torch.no_grad():
        words = model.word_embeddings(text_ids)
    return PerturbedInput(fused_text, tuple(words.shape), words.norm(dim=-1, keepdim=True), valid)


def itm_task(ctx: StepContext, modality: str) -> AdversarialTask:
    """ITM over the positives and one random negative image per caption."""
    b, itm = ctx.batch, require(ctx.objectives, ITM)
    with torch.no_grad():
        rows, neg = sample_negatives(negative_weights(None, ctx.positives, 1.0),
                                         ctx.generator("villa"))
    pair_text = torch.cat([torch.arange(len(b), device=rows.device), rows])
    pair_image = torch.cat([torch.arange(len(b), device=neg.device), neg])
    mask = b.attention_mask[pair_text]
    text, image = ctx.text_embeds[pair_text], ctx.image_embeds[pair_image]
    labels = (torch.arange(len(pair_text), device=mask.device) < len(b)).long()
    inputs = perturbed_forward(ctx, modality, b.input_ids[pair_text], mask, text,
                               b.images[pair_image], image)
    clean = itm.logits(ctx.model.fuse(text, mask, image), mask)
    return AdversarialTask(clean, labels, lambda d: itm.logits(inputs.fused(d), mask), inputs)


def mlm_task(ctx: StepContext, modality: str) -> AdversarialTask | None:
    """MLM on the batch's pairs with a fresh masking; None when no token was masked."""
    b, mlm = ctx.batch, require(ctx.objectives, MLM)
    ids, labels = mask_tokens(b.input_ids, mlm.env.vocab, mlm.cfg, ctx.generator("villa"))
    chosen = labels != IGNORE
    if not bool(chosen.any()):
        return None
    text = ctx.model.encode_text(ids, b.attention_mask)
    inputs = perturbed_forward(ctx, modality, ids, b.attention_mask, text, b.images,
                               ctx.image_embeds)
    clean = mlm.head(ctx.model.fuse(text, b.attention_mask, ctx.image_embeds))[chosen]
    return AdversarialTask(clean, labels[chosen], lambda d: mlm.head(inputs.fused(d))[chosen],
                           inputs)


TASKS: dict[str, Callable[[StepContext, str], AdversarialTask | None]] = {
    "itm": itm_task, "mlm": mlm_task,
}


@register("villa")
class VILLA(Objective):
    cfg: VILLAConfig

    def __init__(self, cfg: VILLAConfig, env: ObjectiveEnv) -> None:
        super().__init__(cfg, env)
        from trainer.config import ConfigError  # trainer.config imports this package

        enabled = {t for t in TASKS if getattr(env.train.objectives, t).enabled}
        if cfg.tasks is None:
            if not enabled:
                raise ConfigError(
                    "objectives.villa.enabled", "VILLA perturbs ITM or MLM through their heads: "
                    "enable objectives.itm or objectives.mlm too",
                )
            self.tasks = [t for t in TASKS if t in enabled]
        else:
            for t in cfg.tasks:
                if t not in enabled:
                    raise ConfigError(
                        "objectives.villa.tasks", f"{t} is listed but objectives.{t} is off",
                    )
            self.tasks = list(dict.fromkeys(cfg.tasks))

    def modality(self, step: int) -> str:
        if self.cfg.modality != "alternate":
            return self.cfg.modality
        return "image" if step % 2 == 0 else "text"

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        start = time.perf_counter()
        modality, k = self.modality(ctx.step), self.cfg.adv_steps
        losses, logs, passes = [], {}, 0
        for name in self.tasks:
            task = TASKS[name](ctx, modality)
            if task is None:
                continue
            inputs = task.inputs
            dim = inputs.delta_shape[-1]
            scale = inputs.norms if self.cfg.epsilon_scale == "embedding_norm" else 1.0
            noise = _uniform(inputs.delta_shape, ctx.generator("villa"), task.clean.device)
            delta = (noise * 2 - 1) \
                * self.cfg.init_mag / math.sqrt(dim) * scale
            target = task.clean.detach()

            def objective(d: Tensor, task: AdversarialTask = task, target: Tensor = target
                          ) -> Tensor:
                return adversarial_loss(task.logits(d), target, task.labels, self.cfg.kl_weight)

            delta = pgd(objective, delta, k, self.cfg.adv_lr * scale, self.cfg.epsilon * scale)
            loss = adversarial_loss(task.logits(delta), task.clean, task.labels,
                                    self.cfg.kl_weight)
            losses.append(loss)
            passes += 1
            logs[f"villa_loss_{name}"] = float(loss.detach())
            delta_norms = delta.norm(dim=-1, keepdim=True)
            logs[f"villa_delta_norm_{name}"] = inputs.mean(delta_norms)
            # the perturbation against the token it moves: what epsilon means on this model
            logs[f"villa_delta_ratio_{name}"] = inputs.mean(
                delta_norms / inputs.norms.clamp_min(1e-12))
        total = torch.stack(losses).sum() if losses else ctx.image_embeds.sum() * 0.0
        return ObjectiveOutput(total, {
            **logs,
            "villa_extra_forwards": float(passes * (k + 2)),
            "villa_extra_backwards": float(passes * k),
            "villa_seconds": time.perf_counter() - start,
        })
