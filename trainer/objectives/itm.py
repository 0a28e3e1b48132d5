"""ITM: does this text match this image? A binary head on the fusion [CLS] (ALBEF sec. 3.2), or
on the mean of the fused token states (``model.text.fusion_readout``).

Each pair gets one negative image and one negative text. With ``hard_negatives`` they are drawn
in proportion to the softmax of the in-batch ITC similarity (hard, contrastively similar
negatives); otherwise uniformly. Pairs that share an image are never drawn as negatives.

The similarity is the one ITC itself scores: with ITC's queue on, online queries against the
momentum model's keys (``text_feat @ image_feat_m.T`` picks negative images, ``image_feat @
text_feat_m.T`` negative texts), as ALBEF's ``model_pretrain.py`` samples from ``sim[:, :bs]``;
otherwise, with no momentum keys in ITC, online against online features.

Retrieval ranks by ``ITM.score``, the logit margin, not by the match probability: see there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.config.objectives import ITMConfig
from trainer.model.pooling import pool_tokens
from trainer.objectives.base import (
    Objective,
    ObjectiveEnv,
    ObjectiveOutput,
    lookup,
    register,
)
from trainer.objectives.itc import ITC

if TYPE_CHECKING:
    from trainer.model.forward import StepContext


def negative_weights(sim: Tensor | None, positives: Tensor, temp: float) -> Tensor:
    """Sampling weights over the batch: softmax(sim/temp) (hard) or uniform, zero on positives."""
    if sim is None:
        weights = torch.ones_like(positives, dtype=torch.float)
    else:
        weights = F.softmax(sim.float() / temp, dim=1) + 1e-5
    return weights.masked_fill(positives, 0.0)


def sample_negatives(
    weights: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """One index per row drawn from its weights; rows with no valid negative are dropped.
    With a (CPU) ``generator`` the draw happens on the CPU, so the stream is the same on any
    device.

    Returns (row indices that got a negative, chosen column per such row).
    """
    valid = weights.sum(dim=1) > 0
    rows = valid.nonzero(as_tuple=True)[0]
    if rows.numel() == 0:
        return rows, rows
    if generator is None:
        return rows, torch.multinomial(weights[rows], 1).squeeze(1)
    picks = torch.multinomial(weights[rows].float().cpu(), 1, generator=generator)
    return rows, picks.squeeze(1).to(weights.device)


@register("itm")
class ITM(Objective):
    cfg: ITMConfig

    def __init__(self, cfg: ITMConfig, env: ObjectiveEnv) -> None:
        super().__init__(cfg, env)
        self.head = nn.Linear(env.text_dim, 2)

    def readout(self, fused: Tensor, mask: Tensor) -> Tensor:
        """[B,L,D] fused text states -> [B,D], what the head reads (``model.text.
        fusion_readout``): the fused [CLS] (ALBEF) or the mean over the caption's tokens."""
        return pool_tokens(fused, self.env.train.model.text.fusion_readout, mask)

    def logits(self, fused: Tensor, mask: Tensor) -> Tensor:
        """Match / no-match logits of fused pairs, [B,2]."""
        return self.head(self.readout(fused, mask))

    def score(self, fused_cls: Tensor) -> Tensor:
        """Match score of fused readouts (``readout``) for retrieval: the logit margin
        ``logit[match] - logit[no match]``, i.e. the log-odds of a match.

        It orders pairs as the match probability does, but a float32 softmax rounds to exactly
        1.0 once the margin passes ~16.6, tying a confident model's best candidates. ALBEF
        (``Retrieval.py``) ranks by the raw match logit ``itm_head(...)[:, 1]``, which does not
        saturate either; the margin is what the loss trains (softmax sees only differences), so
        it does not depend on the head's arbitrary shared offset.
        """
        logits = self.head(fused_cls).float()
        return logits[:, 1] - logits[:, 0]

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        """Negatives for all rows of the global batch are drawn on every data-parallel worker
        alike (the shared stream, gathered features), as 1 worker draws them; each worker keeps
        its rows' picks and takes their candidates from the gathered embeddings."""
        b = ctx.batch
        image, text, mask = ctx.image_embeds, ctx.text_embeds, b.attention_mask
        ids_all = ctx.image_ids_all
        positives = ids_all[:, None] == ids_all[None, :]
        sim_t2i = sim_i2t = None
        itc = lookup(ctx.objectives, ITC)
        if self.cfg.hard_negatives:
            # read the shared features outside no_grad so that ITC, if on, keeps their graph
            text_feat, image_feat = ctx.text_feat_all.detach(), ctx.image_feat_all.detach()
            if itc is not None and itc.cfg.queue:  # ITC's keys are momentum features: ALBEF
                sim_t2i = text_feat @ ctx.image_feat_m_all.t()
                sim_i2t = image_feat @ ctx.text_feat_m_all.t()
            else:
                sim_t2i = text_feat @ image_feat.t()
                sim_i2t = sim_t2i.t()
        gen = ctx.shared_generator("itm")
        with torch.no_grad():
            # ITC's temperature as ITC uses it this step (read, never clamped in place here:
            # ITC's graph holds the parameter)
            temp = (
                float(itc.temp.detach().clamp(itc.cfg.temp_min, itc.cfg.temp_max))
                if itc is not None else self.cfg.hard_negative_temp
            )
            text_rows, neg_image = sample_negatives(negative_weights(sim_t2i, positives, temp), gen)
            image_rows, neg_text = sample_negatives(negative_weights(sim_i2t, positives, temp), gen)
        rows, global_size = ctx.global_rows
        global_count = global_size + len(text_rows) + len(image_rows)
        if ctx.dp is not None:  # this worker's rows (local indices), candidates stay global
            text_rows, neg_image = _local(text_rows, neg_image, rows)
            image_rows, neg_text = _local(image_rows, neg_text, rows)
        image_all, text_all = ctx.gather(image), ctx.gather(text)
        mask_all = ctx.gather_detached(mask)
        # positives, (text, negative image), (negative text, image) in one fusion pass
        fused_mask = torch.cat([mask, mask[text_rows], mask_all[neg_text]])
        fused = ctx.model.fuse(
            torch.cat([text, text[text_rows], text_all[neg_text]]),
            fused_mask,
            torch.cat([image, image_all[neg_image], image[image_rows]]),
        )
        logits = self.logits(fused, fused_mask)
        labels = torch.cat([
            torch.ones(len(b), dtype=torch.long, device=logits.device),
            torch.zeros(len(text_rows) + len(image_rows), dtype=torch.long, device=logits.device),
        ])
        loss = F.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(dim=1) == labels).float().mean()
        if ctx.dp is not None:  # averaged over workers: the mean over every worker's rows
            loss = ctx.dp.global_mean(loss, len(labels), global_count)
        return ObjectiveOutput(loss, {"itm_acc": float(acc)})


def _local(rows: Tensor, picks: Tensor, mine: slice) -> tuple[Tensor, Tensor]:
    """The (row, pick) pairs whose row is one of this worker's, rows made local."""
    keep = (rows >= mine.start) & (rows < mine.stop)
    return rows[keep] - mine.start, picks[keep]
