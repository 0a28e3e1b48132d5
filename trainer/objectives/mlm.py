"""MLM: masked language modelling through the fusion encoder, so tokens are predicted from the
image as well as the text (ALBEF sec. 3.2). With ``distill`` the targets are mixed with the
momentum model's predicted distribution by alpha (MoD for MLM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.config.objectives import MLMConfig
from trainer.model.momentum import frozen_copy
from trainer.objectives.base import (
    Objective,
    ObjectiveEnv,
    ObjectiveOutput,
    register,
)

if TYPE_CHECKING:
    from trainer.model.forward import StepContext, VocabInfo

IGNORE = -100


def mask_tokens(
    input_ids: Tensor, vocab: VocabInfo, cfg: MLMConfig, generator: torch.Generator | None = None,
    global_rows: tuple[slice, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT masking: choose ``mask_prob`` of the non-special tokens; of those 80% -> [MASK],
    10% -> a random token, 10% unchanged. Returns (masked ids, labels with -100 elsewhere).

    With ``global_rows`` (these rows of a global batch of that many rows: a data-parallel
    worker's shard) the draws are made for the whole global batch and these rows kept, so the
    workers together mask exactly what 1 worker masks in the global batch."""
    device = input_ids.device
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for sid in vocab.special_ids:
        special |= input_ids == sid
    shape = input_ids.shape
    rows = slice(None)
    if global_rows is not None:
        rows, shape = global_rows[0], torch.Size([global_rows[1], *input_ids.shape[1:]])

    def draw(p: float) -> Tensor:
        u = torch.rand(shape, generator=generator, device="cpu")[rows].to(device)
        return u < p

    chosen = draw(cfg.mask_prob) & ~special
    labels = input_ids.masked_fill(~chosen, IGNORE)
    to_mask = chosen & draw(cfg.mask_token_frac)
    remaining = cfg.random_token_frac / max(1e-12, 1.0 - cfg.mask_token_frac)
    to_random = chosen & ~to_mask & draw(remaining)
    random_ids = torch.randint(vocab.size, shape, generator=generator)[rows].to(device)
    masked = input_ids.masked_fill(to_mask, vocab.mask_id)
    masked = torch.where(to_random, random_ids, masked)
    return masked, labels


def mlm_loss(
    logits: Tensor, labels: Tensor, soft_labels: Tensor | None = None, alpha: float = 0.0
) -> Tensor:
    """Cross-entropy on the masked positions; with soft labels, (1-a)*CE + a*soft-CE."""
    chosen = labels != IGNORE
    if not bool(chosen.any()):
        return logits.sum() * 0.0
    logp = F.log_softmax(logits[chosen].float(), dim=-1)
    hard = F.nll_loss(logp, labels[chosen])
    if soft_labels is None:
        return hard
    soft = -(logp * soft_labels[chosen].float()).sum(dim=-1).mean()
    return (1 - alpha) * hard + alpha * soft


class MLMHead(nn.Module):
    """BERT's prediction head: transform + LayerNorm, then a decoder over the vocabulary."""

    def __init__(self, hidden: int, vocab_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.decoder = nn.Linear(hidden, vocab_size)

    def forward(self, h: Tensor) -> Tensor:
        return self.decoder(self.LayerNorm(F.gelu(self.dense(h))))


@register("mlm")
class MLM(Objective):
    cfg: MLMConfig

    def __init__(self, cfg: MLMConfig, env: ObjectiveEnv) -> None:
        super().__init__(cfg, env)
        self.head = MLMHead(env.text_dim, env.vocab.size)
        self.needs_momentum_model = cfg.distill
        self.head_m = frozen_copy(self.head) if cfg.distill else None

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.head, self.head_m)] if self.head_m is not None else []

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        b = ctx.batch
        # the global batch's masks from the stream every data-parallel worker shares
        ids, labels = mask_tokens(b.input_ids, self.env.vocab, self.cfg,
                                  ctx.shared_generator("mlm"), ctx.global_rows)
        text = ctx.model.encode_text(ids, b.attention_mask)
        logits = self.head(ctx.model.fuse(text, b.attention_mask, ctx.image_embeds))
        soft = None
        if self.cfg.distill:
            with torch.no_grad():
                m = ctx.momentum_model
                assert m is not None and self.head_m is not None
                text_m = m.encode_text(ids, b.attention_mask)
                fused_m = m.fuse(text_m, b.attention_mask, ctx.image_embeds_m)
                soft = F.softmax(self.head_m(fused_m).float(), dim=-1)
        loss = mlm_loss(logits, labels, soft, self.cfg.alpha * ctx.alpha_ramp)
        chosen = labels != IGNORE
        if ctx.dp is not None:  # averaged over workers: the mean over all masked tokens
            local = int(chosen.sum())
            loss = ctx.dp.global_mean(loss, local, ctx.dp.sum_int(local))
        acc = (logits.argmax(-1)[chosen] == labels[chosen]).float().mean() if chosen.any() else 0
        return ObjectiveOutput(loss, {"mlm_acc": float(acc)})
