"""The interface every vision-language model of the core implements (ALBEF, VLMo's MoME).

Objectives and ``StepContext`` are typed against ``VisionLanguageModel``, never against one
architecture, so ``model.arch`` is a config switch and a new architecture is a new class that
satisfies this protocol (the type checker checks both against it where ``build_model``
returns them). The module side (parameters, state dicts) is ``nn.Module``'s.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from torch import Tensor


class RelationMaps(NamedTuple):
    """Head-averaged attention maps of the layer IAIS regularises (rows sum to 1)."""

    text: Tensor
    """[B,L,L] language self-attention."""
    image: Tensor
    """[B,N,N] visual self-attention over the image tokens ([CLS] + patches)."""
    cross: Tensor
    """[B,L,N] word -> image-token attention (the alignment)."""


@runtime_checkable
class VisionLanguageModel(Protocol):
    """Unimodal encoders, fusion and ITC projections: everything the objectives read, nothing
    they own. Shapes: images [B,3,H,W], token ids and masks [B,L], image tokens [B,1+P,Dv]
    ([CLS] first), text tokens [B,L,Dt]."""

    vision_dim: int
    text_dim: int

    # ---- embeddings and encoders ------------------------------------------------------------
    def patch_embeddings(self, images: Tensor) -> Tensor:
        """[B,3,H,W] -> [B,P,Dv]: what an image perturbation is added to."""
        ...

    def word_embeddings(self, input_ids: Tensor) -> Tensor:
        """[B,L] -> [B,L,Dt]: what a text perturbation is added to."""
        ...

    def encode_image(self, images: Tensor, patch_mask: Tensor | None = None,
                     patch_fill: Tensor | None = None,
                     image_delta: Tensor | None = None) -> Tensor:
        """Image tokens; masked patches replaced by ``patch_fill``, ``image_delta`` added."""
        ...

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor,
                    text_delta: Tensor | None = None) -> Tensor:
        """Text-only token states; ``text_delta`` added to the word embeddings."""
        ...

    # ---- fusion --------------------------------------------------------------------------------
    def fuse(self, text_embeds: Tensor, text_mask: Tensor, image_embeds: Tensor) -> Tensor:
        """Multimodal text states [B,L,Dt] (ITM's [CLS], MLM's predictions)."""
        ...

    def fuse_pair(self, text_embeds: Tensor, text_mask: Tensor, image_embeds: Tensor
                  ) -> tuple[Tensor, Tensor]:
        """Multimodal (text, image-token) states of each pair."""
        ...

    def fuse_image(self, text_embeds: Tensor, text_mask: Tensor, image_embeds: Tensor
                   ) -> Tensor:
        """The image side of ``fuse_pair`` alone."""
        ...

    # ---- unimodal states and ITC features ---------------------------------------------------
    def image_states(self, image_embeds: Tensor) -> Tensor: ...
    def text_states(self, text_embeds: Tensor, text_mask: Tensor | None) -> Tensor: ...
    def image_feat(self, image_embeds: Tensor) -> Tensor:
        """L2-normalised ITC feature [B,E]."""
        ...

    def text_feat(self, text_embeds: Tensor, text_mask: Tensor | None = None) -> Tensor:
        """L2-normalised ITC feature [B,E]."""
        ...

    def relation_attention(self, images: Tensor, text_embeds: Tensor, text_mask: Tensor,
                           image_embeds: Tensor) -> RelationMaps:
        """IAIS's attention maps."""
        ...
