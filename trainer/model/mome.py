"""VLMo's mixture-of-modality-experts transformer (Bao et al. 2022, sec. 2.1), ``model.arch: mome``.

Every block has one self-attention shared by all tokens and FFN experts chosen by the tokens'
modality: a vision expert (V-FFN) and a language expert (L-FFN) in every block, plus a
vision-language expert (VL-FFN) in the top ``mome.num_vl_layers`` blocks. Pre-LN, SDPA.

It exposes ALBEFModel's interface so ITC/ITM/MLM run unchanged, with VLMo's three modes:

- ``encode_image`` / ``encode_text`` are only the embeddings (patch or word + position + modality
  type), cheap: the work happens in the modes below, as in VLMo where each mode is its own pass;
- dual encoder (ITC): ``image_feat`` runs image tokens through all blocks with V-FFN,
  ``text_feat`` text tokens with L-FFN, then [CLS] -> projection;
- fusion (ITM, MLM): ``fuse`` concatenates [text; image], runs the bottom blocks with each
  token's modality expert and the top blocks with VL-FFN, and returns the text part ([CLS] first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.config import ModelConfig
from trainer.model.fusion import attention_probs, init_bert_style
from trainer.model.interface import RelationMaps
from trainer.model.pooling import pool_image, pool_tokens

TEXT, IMAGE = 0, 1


class MultiwayAttention(nn.Module):
    """Multi-head self-attention shared by every modality."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        b, n, d = x.shape
        q, k, v = self._qkv(x)
        attn_mask = None if mask is None else mask[:, None, None, :].bool()
        drop = self.dropout if self.training else 0.0
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
        return self.proj(h.transpose(1, 2).reshape(b, n, d))

    def probs(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """[B,H,N,N] attention map of ``forward``, computed explicitly (IAIS only)."""
        q, k, _ = self._qkv(x)
        return attention_probs(q, k, mask)


class Expert(nn.Module):
    """One modality's FFN with its own pre-norm (VLMo keeps a LayerNorm per expert)."""

    def __init__(self, hidden: int, intermediate: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.fc1 = nn.Linear(hidden, intermediate)
        self.fc2 = nn.Linear(intermediate, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(self.norm(x)))))


Route = str | int
"""Which expert each token uses: "v", "l" or "vl" for all tokens, or an int n: the first n
tokens (text) use L-FFN and the rest (image) V-FFN."""


class MultiwayBlock(nn.Module):
    def __init__(
        self, hidden: int, heads: int, intermediate: int, dropout: float, vl_expert: bool
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.attn = MultiwayAttention(hidden, heads, dropout)
        self.drop = nn.Dropout(dropout)
        names = ["v", "l"] + (["vl"] if vl_expert else [])
        self.experts = nn.ModuleDict({n: Expert(hidden, intermediate, dropout) for n in names})

    def forward(self, x: Tensor, mask: Tensor | None, route: Route) -> Tensor:
        x = x + self.drop(self.attn(self.norm(x), mask))
        if isinstance(route, str):
            return x + self.experts[route](x)
        ffn = torch.cat([self.experts["l"](x[:, :route]), self.experts["v"](x[:, route:])], 1)
        return x + ffn


class MoMEModel(nn.Module):
    """Multiway transformer with ALBEFModel's interface (see the module docstring)."""

    def __init__(self, cfg: ModelConfig, *, vocab_size: int, image_size: int, max_len: int):
        super().__init__()
        m = cfg.mome
        d, p = m.hidden_size, cfg.vision.patch_size
        if image_size % p:
            raise ValueError(f"model.vision.patch_size: {p} does not divide {image_size}")
        num_patches = (image_size // p) ** 2
        self.num_vl_layers = m.num_vl_layers
        self.patch_embed = nn.Conv2d(3, d, kernel_size=p, stride=p)
        self.image_cls = nn.Parameter(torch.zeros(1, 1, d))
        self.image_pos = nn.Parameter(torch.zeros(1, 1 + num_patches, d))
        self.word_embed = nn.Embedding(vocab_size, d)
        self.text_pos = nn.Embedding(max(max_len, 32), d)
        self.type_embed = nn.Embedding(2, d)
        self.embed_drop = nn.Dropout(cfg.dropout)
        first_vl = m.num_layers - m.num_vl_layers
        self.layers = nn.ModuleList(
            MultiwayBlock(d, m.num_heads, m.intermediate_size, cfg.dropout, i >= first_vl)
            for i in range(m.num_layers)
        )
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.vision_proj = nn.Linear(d, cfg.embed_dim)
        self.text_proj = nn.Linear(d, cfg.embed_dim)
        self.vision_pooling = cfg.vision.pooling
        self.text_pooling = cfg.text.pooling
        init_bert_style(self)
        for emb in (self.word_embed, self.text_pos, self.type_embed):
            nn.init.normal_(emb.weight, std=0.02)
        nn.init.normal_(self.image_pos, std=0.02)
        nn.init.normal_(self.image_cls, std=0.02)
        self.vision_dim = self.text_dim = d

    # ---- embeddings (the "encoders" of the shared interface) --------------------------------
    def patch_embeddings(self, images: Tensor) -> Tensor:
        """[B,3,H,W] -> [B,P,D]: what ``image_delta`` is added to."""
        return self.patch_embed(images.to(self.patch_embed.weight.dtype)).flatten(2).transpose(1, 2)

    def word_embeddings(self, input_ids: Tensor) -> Tensor:
        """[B,L] -> [B,L,D]: what ``text_delta`` is added to."""
        return self.word_embed(input_ids)

    def encode_image(
        self,
        images: Tensor,
        patch_mask: Tensor | None = None,
        patch_fill: Tensor | None = None,
        image_delta: Tensor | None = None,
    ) -> Tensor:
        """[B,3,H,W] -> patch embeddings [B,1+P,D] ([CLS] first), + position + image type."""
        x = self.patch_embeddings(images)
        if image_delta is not None:
            x = x + image_delta
        if patch_mask is not None:
            fill = x.new_zeros(x.shape[-1]) if patch_fill is None else patch_fill.to(x.dtype)
            x = torch.where(patch_mask[..., None].bool(), fill, x)
        x = torch.cat([self.image_cls.expand(x.shape[0], -1, -1), x], dim=1)
        return self.embed_drop(x + self.image_pos + self.type_embed.weight[IMAGE])

    def encode_text(
        self, input_ids: Tensor, attention_mask: Tensor, text_delta: Tensor | None = None
    ) -> Tensor:
        """[B,L] -> word embeddings (+ ``text_delta``) + position + text type, [B,L,D]."""
        x = self.word_embeddings(input_ids)
        if text_delta is not None:
            x = x + text_delta
        pos = self.text_pos(torch.arange(input_ids.shape[1], device=input_ids.device))
        return self.embed_drop(x + pos + self.type_embed.weight[TEXT])

    # ---- modes -------------------------------------------------------------------------------
    def _run(self, x: Tensor, mask: Tensor | None, routes: list[Route]) -> Tensor:
        for layer, route in zip(self.layers, routes, strict=True):
            x = layer(x, mask, route)
        return self.norm(x)

    def _fusion_routes(self, num_text: int) -> list[Route]:
        first_vl = len(self.layers) - self.num_vl_layers
        return [num_text if i < first_vl else "vl" for i in range(len(self.layers))]

    def image_states(self, image_embeds: Tensor) -> Tensor:
        """Dual-encoder image pass: every block with V-FFN, [B,1+P,D]."""
        return self._run(image_embeds, None, ["v"] * len(self.layers))

    def text_states(self, text_embeds: Tensor, text_mask: Tensor | None) -> Tensor:
        """Dual-encoder text pass: every block with L-FFN, [B,L,D]."""
        return self._run(text_embeds, text_mask, ["l"] * len(self.layers))

    def image_feat(self, image_embeds: Tensor) -> Tensor:
        pooled = pool_image(self.image_states(image_embeds), self.vision_pooling)
        return F.normalize(self.vision_proj(pooled), dim=-1)

    def text_feat(self, text_embeds: Tensor, text_mask: Tensor | None = None) -> Tensor:
        pooled = pool_tokens(self.text_states(text_embeds, text_mask), self.text_pooling, text_mask)
        return F.normalize(self.text_proj(pooled), dim=-1)

    def fuse_pair(
        self, text_embeds: Tensor, text_mask: Tensor, image_embeds: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Fusion mode over [text; image]: (text states [B,L,D], image states [B,1+P,D])."""
        n = text_embeds.shape[1]
        x = torch.cat([text_embeds, image_embeds.to(text_embeds.dtype)], dim=1)
        ones = text_mask.new_ones(image_embeds.shape[:2])
        out = self._run(x, torch.cat([text_mask, ones], dim=1), self._fusion_routes(n))
        return out[:, :n], out[:, n:]

    def fuse(self, text_embeds: Tensor, text_mask: Tensor, image_embeds: Tensor) -> Tensor:
        return self.fuse_pair(text_embeds, text_mask, image_embeds)[0]

    def fuse_image(self, text_embeds: Tensor, text_mask: Tensor, image_embeds: Tensor) -> Tensor:
        return self.fuse_pair(text_embeds, text_mask, image_embeds)[1]

    def relation_attention(
        self, images: Tensor, text_embeds: Tensor, text_mask: Tensor, image_embeds: Tensor
    ) -> RelationMaps:
        """IAIS's maps from the last fusion block's one self-attention over [text; image]
        (UNITER-like single stream): its text-text, image-image and text-image blocks, each
        renormalised over its own keys. ``images`` is unused (the embeddings suffice)."""
        n = text_embeds.shape[1]
        x = torch.cat([text_embeds, image_embeds.to(text_embeds.dtype)], dim=1)
        mask = torch.cat([text_mask, text_mask.new_ones(image_embeds.shape[:2])], dim=1)
        routes = self._fusion_routes(n)
        for layer, route in zip(self.layers[:-1], routes[:-1], strict=True):
            x = layer(x, mask, route)
        last = self.layers[-1]
        assert isinstance(last, MultiwayBlock)  # nn.ModuleList types its items as nn.Module
        a = last.attn.probs(last.norm(x), mask).mean(1)  # [B,N,N]

        def block(rows: slice, cols: slice) -> Tensor:
            sub = a[:, rows, cols]
            return sub / sub.sum(-1, keepdim=True).clamp_min(1e-12)

        t, v = slice(0, n), slice(n, None)
        return RelationMaps(block(t, t), block(v, v), block(t, v))
