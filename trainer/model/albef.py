"""ALBEF's model: a ViT image encoder, a BERT text encoder, a fusion encoder, ITC projections.

Encoders are built from transformers configs with random init, or loaded from a local
pretrained path. The heads of the objectives (ITM, MLM) live with the objectives.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from transformers import BertConfig, BertModel, ViTConfig, ViTModel

from trainer.config import ModelConfig
from trainer.model.fusion import FusionEncoder, init_bert_style, load_fusion_from_bert


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
        if cfg.text.pretrained:
            full = BertModel.from_pretrained(cfg.text.pretrained, local_files_only=True)
            load_fusion_from_bert(self.fusion, full.state_dict(), first=cfg.text.num_text_layers)
        self.vision_proj = nn.Linear(vision_dim, cfg.embed_dim)
        self.text_proj = nn.Linear(text_dim, cfg.embed_dim)
        self.vision_dim = vision_dim
        self.text_dim = text_dim

    def encode_image(self, images: Tensor) -> Tensor:
        """[B,3,H,W] -> [B, 1+patches, Dv]; position 0 is [CLS]."""
        return self.vision(pixel_values=images).last_hidden_state

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Text-only layers: [B,L] -> [B,L,Dt]."""
        return self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def fuse(self, text_embeds: Tensor, text_mask: Tensor, image_embeds: Tensor) -> Tensor:
        """Fusion layers: text attends to itself and to every image token."""
        return self.fusion(text_embeds, text_mask, image_embeds)

    def image_feat(self, image_embeds: Tensor) -> Tensor:
        return F.normalize(self.vision_proj(image_embeds[:, 0]), dim=-1)

    def text_feat(self, text_embeds: Tensor) -> Tensor:
        return F.normalize(self.text_proj(text_embeds[:, 0]), dim=-1)


def build_model(
    cfg: ModelConfig, *, vocab_size: int, image_size: int, max_len: int
) -> ALBEFModel:
    """Pick the architecture named by ``model.arch``."""
    if cfg.arch == "albef":
        return ALBEFModel(cfg, vocab_size=vocab_size, image_size=image_size, max_len=max_len)
    raise ValueError(f"model.arch: unknown architecture {cfg.arch!r}")

