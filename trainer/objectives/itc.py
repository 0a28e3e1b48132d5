"""ITC: image-text contrastive loss on projected [CLS] features (ALBEF sec. 3.2).

With ``queue`` the negatives also come from a FIFO of momentum features (MoCo-style); with
``distill`` the one-hot targets are mixed with the momentum model's softmax by alpha (MoD).
Pairs that show the same image are all positives (targets spread evenly over them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.config.objectives import ITCConfig
from trainer.objectives.base import (
    Objective,
    ObjectiveEnv,
    ObjectiveOutput,
    register,
)

if TYPE_CHECKING:
    from trainer.model.forward import StepContext


def soft_targets(positives: Tensor) -> Tensor:
    """Each row's probability mass spread evenly over its positives."""
    pos = positives.float()
    return pos / pos.sum(dim=1, keepdim=True)


def contrastive_loss(sim: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of softmax(sim) rows against (soft) target rows, averaged over rows."""
    return -(F.log_softmax(sim, dim=1) * targets).sum(dim=1).mean()


def itc_loss(
    image_feat: Tensor,
    text_feat: Tensor,
    image_keys: Tensor,
    text_keys: Tensor,
    positives: Tensor,
    temp: Tensor | float,
    soft_i2t: Tensor | None = None,
    soft_t2i: Tensor | None = None,
    alpha: float = 0.0,
) -> Tensor:
    """Symmetric InfoNCE. ``*_keys`` are [K,D] candidates, the first B of which are the batch.

    ``positives`` is [B,K]; ``soft_*`` are momentum-model distributions over the same keys.
    """
    sim_i2t = image_feat @ text_keys.t() / temp
    sim_t2i = text_feat @ image_keys.t() / temp
    hard = soft_targets(positives)
    t_i2t = hard if soft_i2t is None else alpha * soft_i2t + (1 - alpha) * hard
    t_t2i = hard if soft_t2i is None else alpha * soft_t2i + (1 - alpha) * hard
    return (contrastive_loss(sim_i2t, t_i2t) + contrastive_loss(sim_t2i, t_t2i)) / 2


@register("itc")
class ITC(Objective):
    cfg: ITCConfig
    temp: Tensor
    """A parameter when ``learnable_temp``, else a buffer."""
    # buffers, only with ``queue``
    image_queue: Tensor
    text_queue: Tensor
    idx_queue: Tensor
    queue_ptr: Tensor

    def __init__(self, cfg: ITCConfig, env: ObjectiveEnv) -> None:
        super().__init__(cfg, env)
        self.needs_momentum_model = cfg.queue or cfg.distill
        temp = torch.tensor(cfg.temp)
        if cfg.learnable_temp:
            self.temp = nn.Parameter(temp)
        else:
            self.register_buffer("temp", temp)
        if cfg.queue:
            dim = env.train.model.embed_dim
            gen = torch.Generator().manual_seed(0)
            self.register_buffer(
                "image_queue", F.normalize(torch.randn(cfg.queue_size, dim, generator=gen), dim=1)
            )
            self.register_buffer(
                "text_queue", F.normalize(torch.randn(cfg.queue_size, dim, generator=gen), dim=1)
            )
            # -1: a random initial key, never a positive of any real image.
            self.register_buffer("idx_queue", torch.full((cfg.queue_size,), -1, dtype=torch.long))
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def current_temp(self) -> Tensor:
        with torch.no_grad():
            self.temp.clamp_(self.cfg.temp_min, self.cfg.temp_max)
        return self.temp

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        temp = self.current_temp()
        # this worker's rows score against the global batch's keys (``*_all``: gathered over
        # data-parallel workers, the local tensors themselves for 1 worker)
        ids, ids_all = ctx.batch.image_ids, ctx.image_ids_all
        if self.cfg.queue:
            filled = self.idx_queue >= 0  # slots not yet written hold no key
            image_keys = torch.cat([ctx.image_feat_m_all, self.image_queue[filled]])
            text_keys = torch.cat([ctx.text_feat_m_all, self.text_queue[filled]])
            key_ids = torch.cat([ids_all, self.idx_queue[filled]])
        else:
            image_keys, text_keys, key_ids = ctx.image_feat_all, ctx.text_feat_all, ids_all
        positives = ids[:, None] == key_ids[None, :]
        soft_i2t = soft_t2i = None
        if self.cfg.distill:
            with torch.no_grad():
                m_img_keys = image_keys if self.cfg.queue else ctx.image_feat_m_all
                m_txt_keys = text_keys if self.cfg.queue else ctx.text_feat_m_all
                soft_i2t = F.softmax(ctx.image_feat_m @ m_txt_keys.t() / temp, dim=1)
                soft_t2i = F.softmax(ctx.text_feat_m @ m_img_keys.t() / temp, dim=1)
        loss = itc_loss(
            ctx.image_feat, ctx.text_feat, image_keys, text_keys, positives, temp,
            soft_i2t, soft_t2i, self.cfg.alpha * ctx.alpha_ramp,
        )
        if self.cfg.queue and self.training:  # all workers enqueue the same global keys
            self._enqueue(ctx.image_feat_m_all, ctx.text_feat_m_all, ids_all)
        return ObjectiveOutput(loss, {"temp": float(temp.detach())})

    @torch.no_grad()
    def _enqueue(self, image_feat: Tensor, text_feat: Tensor, ids: Tensor) -> None:
        """Write the batch's momentum keys over the oldest entries (wrapping around)."""
        n = image_feat.shape[0]
        size = self.cfg.queue_size
        slots = (int(self.queue_ptr) + torch.arange(n, device=ids.device)) % size
        if n > size:  # a batch larger than the queue keeps only its last `size` keys
            slots, image_feat, text_feat, ids = slots[-size:], image_feat[-size:], \
                text_feat[-size:], ids[-size:]
        self.image_queue[slots] = image_feat.to(self.image_queue.dtype)
        self.text_queue[slots] = text_feat.to(self.text_queue.dtype)
        self.idx_queue[slots] = ids
        self.queue_ptr.fill_((int(self.queue_ptr) + n) % size)

