"""The per-step context objectives share: each intermediate is computed once, and only if asked.

This is how "an objective that is off costs nothing" holds: nothing here runs eagerly, so the
vision encoder, the fusion encoder or the momentum model only run when an enabled objective
reads the property that needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn

from trainer.distributed import DataParallel, rank_stream_name
from trainer.model.interface import RelationMaps, VisionLanguageModel
from trainer.streams import RandomStreams


@dataclass
class Batch:
    images: Tensor
    """[B,3,H,W] float."""
    input_ids: Tensor
    """[B,L] token ids, [CLS] first."""
    attention_mask: Tensor
    """[B,L] 1 for tokens, 0 for padding."""
    image_ids: Tensor
    """[B] which image each pair shows: pairs sharing one are never each other's negatives."""
    patch_histograms: Tensor | None = None
    """[B,C,P,K] float share of each label in each patch (``trainer.data.patch_histograms``),
    filled by the loop only when an enabled objective sets ``needs_patch_histograms`` and the
    data has label maps."""

    def to(self, device: torch.device) -> Batch:
        images, input_ids, attention_mask, image_ids = (
            t.to(device, non_blocking=True)
            for t in (self.images, self.input_ids, self.attention_mask, self.image_ids)
        )
        hist = None if self.patch_histograms is None else self.patch_histograms.to(device)
        return Batch(images, input_ids, attention_mask, image_ids, patch_histograms=hist)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class VocabInfo:
    """The token ids objectives need (MLM masking, special-token handling)."""

    size: int
    pad_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    unk_id: int

    @property
    def special_ids(self) -> list[int]:
        return [self.pad_id, self.cls_id, self.sep_id, self.mask_id, self.unk_id]


class StepContext:
    """Lazily computed, memoised features of one batch for the online and momentum models."""

    def __init__(
        self,
        model: VisionLanguageModel,
        momentum_model: VisionLanguageModel | None,
        batch: Batch,
        *,
        alpha_ramp: float,
        step: int,
        streams: RandomStreams | None = None,
        data_parallel: DataParallel | None = None,
    ) -> None:
        self.model = model
        self.streams = streams
        """The trial's named random streams; None (tests) draws from torch's global one."""
        self.dp = data_parallel
        """This worker's place among data-parallel workers (``trainer.distributed``); None
        for 1 worker, where every ``*_all`` property is its local counterpart."""
        self.momentum_model = momentum_model
        self.batch = batch
        self.alpha_ramp = alpha_ramp
        """Fraction (0 to 1) of each objective's distillation alpha in force at this step."""
        self.step = step
        self.objectives: dict[str, nn.Module] = {}
        """The enabled objectives, for one that reads another's parts (VILLA uses ITM's and
        MLM's heads, ITM's hard negatives ITC's temperature)."""

    def generator(self, name: str) -> torch.Generator | None:
        """The CPU generator of stream ``name`` (see ``trainer.streams``), or None; private to
        this data-parallel worker (``trainer.distributed.rank_stream_name``)."""
        if self.streams is None:
            return None
        return self.streams.generator(rank_stream_name(name, self.dp))

    def shared_generator(self, name: str) -> torch.Generator | None:
        """Stream ``name`` as every data-parallel worker holds it: for an objective that draws
        for the global batch (``global_rows``) and keeps this worker's rows."""
        return None if self.streams is None else self.streams.generator(name)

    @property
    def global_rows(self) -> tuple[slice, int]:
        """(this worker's rows of the global batch, the global batch size)."""
        n = len(self.batch)
        if self.dp is None:
            return slice(0, n), n
        return self.dp.rows(n), n * self.dp.world

    def gather(self, x: Tensor) -> Tensor:
        """``x`` over the global batch, with gradient to this worker's rows (1 worker: ``x``)."""
        return x if self.dp is None else self.dp.gather(x)

    def gather_detached(self, x: Tensor) -> Tensor:
        return x if self.dp is None else self.dp.gather_detached(x)

    # ---- online model ---------------------------------------------------------------------
    @cached_property
    def image_embeds(self) -> Tensor:
        return self.model.encode_image(self.batch.images)

    @cached_property
    def text_embeds(self) -> Tensor:
        return self.model.encode_text(self.batch.input_ids, self.batch.attention_mask)

    @cached_property
    def image_feat(self) -> Tensor:
        return self.model.image_feat(self.image_embeds)

    @cached_property
    def text_feat(self) -> Tensor:
        return self.model.text_feat(self.text_embeds, self.batch.attention_mask)

    @cached_property
    def image_feat_all(self) -> Tensor:
        """[B_global,D] every worker's ``image_feat``, with gradient (ITC's in-batch keys)."""
        return self.gather(self.image_feat)

    @cached_property
    def text_feat_all(self) -> Tensor:
        return self.gather(self.text_feat)

    @cached_property
    def image_ids_all(self) -> Tensor:
        return self.gather_detached(self.batch.image_ids)

    @cached_property
    def image_states(self) -> Tensor:
        """Unimodal image token states [B,1+P,Dv] (ALBEF: the ViT output; MoME: the V-FFN
        pass), the regression target of MRFR."""
        return self.model.image_states(self.image_embeds)

    @cached_property
    def relation_maps(self) -> RelationMaps:
        """Explicit attention maps of the regularised layer (IAIS only)."""
        b = self.batch
        return self.model.relation_attention(
            b.images, self.text_embeds, b.attention_mask, self.image_embeds
        )

    @cached_property
    def positives(self) -> Tensor:
        """[B,B] True where two pairs show the same image."""
        ids = self.batch.image_ids
        return ids[:, None] == ids[None, :]

    @cached_property
    def image_feat_m_all(self) -> Tensor:
        """[B_global,D] every worker's momentum keys (no gradient)."""
        return self.gather_detached(self.image_feat_m)

    @cached_property
    def text_feat_m_all(self) -> Tensor:
        return self.gather_detached(self.text_feat_m)

    # ---- momentum model (no gradients) ----------------------------------------------------
    def _momentum(self) -> VisionLanguageModel:
        if self.momentum_model is None:
            raise RuntimeError("an objective asked for momentum features but no EMA model exists")
        return self.momentum_model

    @cached_property
    def image_embeds_m(self) -> Tensor:
        with torch.no_grad():
            return self._momentum().encode_image(self.batch.images)

    @cached_property
    def image_feat_m(self) -> Tensor:
        with torch.no_grad():
            return self._momentum().image_feat(self.image_embeds_m)

    @cached_property
    def text_feat_m(self) -> Tensor:
        with torch.no_grad():
            m = self._momentum()
            b = self.batch
            return m.text_feat(m.encode_text(b.input_ids, b.attention_mask), b.attention_mask)

