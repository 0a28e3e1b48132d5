"""Shared pieces of masked patch modelling (UNITER's MRM on ViT patches): the patch mask and the
masked fusion pass. MRFR and MRC-kl register themselves in their own modules.

Conditional masking (UNITER sec. 3.1): with ``conditional_masking`` a masked-patch pass sees
the clean caption, just as an MLM pass sees the clean image, so only one modality is masked at a
time. Off, the caption of a masked-patch pass is BERT-masked too (joint masking, UNITER's
ablation of it); MLM passes are unchanged either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from trainer.config.objectives import MPMConfig
from trainer.objectives.mlm import MLMConfig, mask_tokens

if TYPE_CHECKING:
    from trainer.model.forward import StepContext, VocabInfo


def draw_patch_mask(
    batch: int, patches: int, prob: float, device: torch.device,
    generator: torch.Generator | None = None,
) -> Tensor:
    """[B,P] bool, each patch masked with ``prob``; at least one masked patch per image (as
    UNITER guarantees one masked region), so every row contributes to the loss."""
    mask = torch.rand(batch, patches, generator=generator) < prob
    empty = ~mask.any(dim=1)
    if bool(empty.any()):
        pick = torch.randint(patches, (batch,), generator=generator)
        mask[empty, pick[empty]] = True
    return mask.to(device)


def num_patches(ctx: StepContext, patch_size: int) -> int:
    h, w = ctx.batch.images.shape[-2:]
    return (h // patch_size) * (w // patch_size)


def masked_patch_states(
    ctx: StepContext,
    cfg: MPMConfig,
    vocab: VocabInfo,
    patch_size: int,
    fill: Tensor | None,
    stream: str,
) -> tuple[Tensor, Tensor]:
    """(patch mask [B,P], fused states of the patches [B,P,D]) of one masked pass: masked
    patch embeddings (replaced by ``fill``, zero if None) through the encoder, then the fusion
    path conditioned on the caption (clean, or BERT-masked without conditional masking)."""
    b = ctx.batch
    gen = ctx.generator(stream)
    mask = draw_patch_mask(len(b), num_patches(ctx, patch_size), cfg.mask_prob, b.images.device,
                           gen)
    image = ctx.model.encode_image(b.images, patch_mask=mask, patch_fill=fill)
    if cfg.conditional_masking:
        text = ctx.text_embeds
    else:
        ids, _ = mask_tokens(b.input_ids, vocab, MLMConfig(mask_prob=cfg.mask_prob), gen)
        text = ctx.model.encode_text(ids, b.attention_mask)
    states = ctx.model.fuse_image(text, b.attention_mask, image)
    return mask, states[:, 1:]
