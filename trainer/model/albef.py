"""ALBEF's model: a ViT image encoder, a BERT text encoder, a fusion encoder, ITC projections.

Encoders are built from transformers configs with random init, or loaded from a local
pretrained path. The heads of the objectives (ITM, MLM) live with the objectives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import BertConfig, BertModel, ViTConfig, ViTModel
from transformers.models.vit.modeling_vit import ViTLayer

from trainer.config import ModelConfig
from trainer.model.fusion import (
    FusionEncoder,
    FusionLayer,
    attention_probs,
    init_bert_style,
    init_cross_attention_lecun,
    load_fusion_from_bert,
)
from trainer.model.interface import RelationMaps
from trainer.model.pooling import pool_image, pool_tokens


def _vit(cfg: ModelConfig, image_size: int) -> ViTModel:
    v = cfg.vision
    if v.pretrained:
        return ViTModel.from_pretrained(
            v.pretrained, add_pooling_layer=False, local_files_only=True,
            attn_implementation="sdpa",
        )
    config = ViTConfig(
        image_size=image_size,
        patch_size=v.patch_size,
        hidden_size=v.hidden_size,
        num_hidden_layers=v.num_layers,
        num_attention_heads=v.num_heads,
        intermediate_size=v.intermediate_size,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
    )
    config._attn_implementation = "sdpa"
    return ViTModel(config, add_pooling_layer=False)


def _bert(cfg: ModelConfig, vocab_size: int, max_len: int) -> BertModel:
    t = cfg.text
    if t.pretrained:
        return BertModel.from_pretrained(
            t.pretrained, add_pooling_layer=False, local_files_only=True,
            num_hidden_layers=t.num_text_layers, attn_implementation="sdpa",
        )
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=t.hidden_size,
        num_hidden_layers=t.num_text_layers,
        num_attention_heads=t.num_heads,
        intermediate_size=t.intermediate_size,
        max_position_embeddings=max(max_len, 32),
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
    )
    config._attn_implementation = "sdpa"
    return BertModel(config, add_pooling_layer=False)


class ALBEFModel(nn.Module):
    """Unimodal encoders + fusion; everything ITC/ITM/MLM need, and nothing they own."""

    def __init__(self, cfg: ModelConfig, *, vocab_size: int, image_size: int, max_len: int):
        super().__init__()
        self.vision = _vit(cfg, image_size)
        self.text = _bert(cfg, vocab_size, max_len)
        vision_dim = self.vision.config.hidden_size
        text_dim = self.text.config.hidden_size
        self.fusion = FusionEncoder(
            cfg.text.num_fusion_layers,
            text_dim,
            cfg.text.num_heads,
            cfg.text.intermediate_size,
            vision_dim,
            cfg.dropout,
        )
        init_bert_style(self.fusion)
        if cfg.text.cross_attention_init == "lecun":
            init_cross_attention_lecun(self.fusion)
        if cfg.text.pretrained:
            full = BertModel.from_pretrained(cfg.text.pretrained, local_files_only=True)
            load_fusion_from_bert(self.fusion, full.state_dict(), first=cfg.text.num_text_layers)
        self.vision_proj = nn.Linear(vision_dim, cfg.embed_dim)
        self.text_proj = nn.Linear(text_dim, cfg.embed_dim)
        self.vision_dim = vision_dim
        self.text_dim = text_dim
        self.vision_pooling = cfg.vision.pooling
        self.text_pooling = cfg.text.pooling

    def patch_embeddings(self, images: Tensor) -> Tensor:
        """[B,3,H,W] -> [B,P,Dv]: what ``image_delta`` is added to."""
        emb = self.vision.embeddings
        return emb.patch_embeddings(images.to(emb.patch_embeddings.projection.weight.dtype))

    def word_embeddings(self, input_ids: Tensor) -> Tensor:
        """[B,L] -> [B,L,Dt]: what ``text_delta`` is added to."""
        return self.text.embeddings.word_embeddings(input_ids)

    def encode_image(
        self,
        images: Tensor,
        patch_mask: Tensor | None = None,
        patch_fill: Tensor | None = None,
        image_delta: Tensor | None = None,
    ) -> Tensor:
        """[B,3,H,W] -> [B, 1+patches, Dv]; position 0 is [CLS].

        ``patch_mask`` [B,P] replaces those patch embeddings by ``patch_fill`` [Dv] (zero if
        None) for masked patch modelling; ``image_delta`` [B,P,Dv] is added to the patch
        embeddings (VILLA's perturbation). Without them this is the plain ViTModel call.
        """
        if patch_mask is None and image_delta is None:
            return self.vision(pixel_values=images).last_hidden_state
        emb = self.vision.embeddings
        x = self.patch_embeddings(images)
        if image_delta is not None:
            x = x + image_delta
        if patch_mask is not None:
            fill = x.new_zeros(x.shape[-1]) if patch_fill is None else patch_fill.to(x.dtype)
            x = torch.where(patch_mask[..., None].bool(), fill, x)
        x = torch.cat([emb.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        h = emb.dropout(x + emb.position_embeddings)
        for layer in self.vision.layers:
            h = layer(h, None)
        return self.vision.layernorm(h)

    def encode_text(
        self, input_ids: Tensor, attention_mask: Tensor, text_delta: Tensor | None = None
    ) -> Tensor:
        """Text-only layers: [B,L] -> [B,L,Dt]. ``text_delta`` [B,L,Dt] is added to the word
        embeddings (VILLA's perturbation); without it this is the plain BertModel call."""
        if text_delta is None:
            return self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        words = self.word_embeddings(input_ids) + text_delta
        return self.text(inputs_embeds=words, attention_mask=attention_mask).last_hidden_state

    def fuse(self, text_embeds: Tensor, text_mask: Tensor, image_embeds: Tensor) -> Tensor:
        """Fusion layers: text attends to itself and to every image token."""
        return self.fusion(text_embeds, text_mask, image_embeds)

    def fuse_text_only(self, text_embeds: Tensor, text_mask: Tensor) -> Tensor:
        """The fusion layers without their cross-attention: the text encoder and they together
        are one BERT, as ALBEF's text encoder and fusion are BERT-base's layers 0-5 and 6-11
        (the warm start's text stage trains them so, ``init.fusion``)."""
        return self.fusion(text_embeds, text_mask, None)

    def fuse_pair(
        self, text_embeds: Tensor, text_mask: Tensor, image_embeds: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Contextual (text, image-token) states of each pair, for patch and word-patch
        objectives. ALBEF's fusion only updates text, so the image side runs the same fusion
        layers with the roles swapped (image tokens query, words are keys); needs Dv == Dt."""
        return self.fusion(text_embeds, text_mask, image_embeds), self.fuse_image(
            text_embeds, text_mask, image_embeds
        )

    def fuse_image(self, text_embeds: Tensor, text_mask: Tensor, image_embeds: Tensor) -> Tensor:
        """The image side of ``fuse_pair`` alone (one fusion pass), [B,1+P,D]."""
        if self.vision_dim != self.text_dim:
            raise ValueError(
                "model: patch-level objectives on ALBEF need vision.hidden_size == "
                "text.hidden_size (the fusion layers are reused with image tokens as queries)"
            )
        ones = image_embeds.new_ones(image_embeds.shape[:2], dtype=torch.long)
        return self.fusion(image_embeds, ones, text_embeds, text_mask)

    def image_states(self, image_embeds: Tensor) -> Tensor:
        """Unimodal image token states (ALBEF: the encoder output itself)."""
        return image_embeds

    def text_states(self, text_embeds: Tensor, text_mask: Tensor | None) -> Tensor:
        """Unimodal text token states (ALBEF: the text encoder output itself)."""
        return text_embeds

    def image_feat(self, image_embeds: Tensor) -> Tensor:
        pooled = pool_image(image_embeds, self.vision_pooling)
        return F.normalize(self.vision_proj(pooled), dim=-1)

    def text_feat(self, text_embeds: Tensor, text_mask: Tensor | None = None) -> Tensor:
        """``text_mask`` selects the tokens mean pooling averages ([CLS] pooling ignores it)."""
        pooled = pool_tokens(text_embeds, self.text_pooling, text_mask)
        return F.normalize(self.text_proj(pooled), dim=-1)

    def relation_attention(
        self, images: Tensor, text_embeds: Tensor, text_mask: Tensor, image_embeds: Tensor
    ) -> RelationMaps:
        """IAIS's maps: the last fusion layer's text self-attention and word->image
        cross-attention, and the last ViT layer's self-attention (recomputed from that layer's
        input, an extra pass through the other ViT layers, only when IAIS is on)."""
        h = text_embeds
        *lower, last = self.fusion.layer
        assert isinstance(last, FusionLayer)  # nn.ModuleList types its items as nn.Module
        for layer in lower:
            h = layer(h, text_mask, image_embeds, None)
        a_text = last.attention.probs(h, h, text_mask)
        h = last.attention(h, h, text_mask)
        a_cross = last.crossattention.probs(h, image_embeds, None)
        emb = self.vision.embeddings
        v = emb(images.to(emb.patch_embeddings.projection.weight.dtype))
        *vis_lower, vis_last = self.vision.layers
        assert isinstance(vis_last, ViTLayer)
        for layer in vis_lower:
            v = layer(v, None)
        att = vis_last.attention
        x = vis_last.layernorm_before(v)
        split = (x.shape[0], x.shape[1], -1, att.head_dim)
        q = att.q_proj(x).view(split).transpose(1, 2)
        k = att.k_proj(x).view(split).transpose(1, 2)
        a_image = attention_probs(q, k, None)
        return RelationMaps(a_text.mean(1), a_image.mean(1), a_cross.mean(1))
