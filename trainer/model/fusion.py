"""ALBEF's fusion encoder: BERT layers with cross-attention to the image, on PyTorch SDPA.

Parameter names mirror transformers' ``BertLayer`` (``attention.self.query`` …,
``crossattention.*``), so the top layers of a local pretrained BERT load straight into them the
way ALBEF initialises its fusion layers from BERT-base layers 6-11.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def attention_probs(q: Tensor, k: Tensor, kv_mask: Tensor | None) -> Tensor:
    """softmax(QK^T / sqrt(d)) over keys, [B,H,Lq,Lk]: the map SDPA computes but never returns
    (explicit, so only objectives that read attention maps, e.g. IAIS, pay for it)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if kv_mask is not None:
        scores = scores.masked_fill(~kv_mask[:, None, None, :].bool(), float("-inf"))
    return F.softmax(scores.float(), dim=-1)


class _QKV(nn.Module):
    def __init__(self, hidden: int, kv_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(kv_dim, hidden)
        self.value = nn.Linear(kv_dim, hidden)


class _Output(nn.Module):
    def __init__(self, d_in: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, intermediate)


class Attention(nn.Module):
    """Multi-head attention (self or cross) with a post-LN residual, as in BERT."""

    def __init__(self, hidden: int, heads: int, kv_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.self = _QKV(hidden, kv_dim)
        self.output = _Output(hidden, hidden, dropout)

    def probs(self, x: Tensor, kv: Tensor, kv_mask: Tensor | None) -> Tensor:
        """The attention map of ``forward`` ([B,H,Lq,Lk]), computed explicitly."""
        b, lq, d = x.shape
        q = self.self.query(x).view(b, lq, self.heads, -1).transpose(1, 2)
        k = self.self.key(kv).view(b, kv.shape[1], self.heads, -1).transpose(1, 2)
        return attention_probs(q, k, kv_mask)

    def forward(self, x: Tensor, kv: Tensor, kv_mask: Tensor | None) -> Tensor:
        b, lq, d = x.shape
        lk = kv.shape[1]
        split = (b, -1, self.heads, d // self.heads)
        q = self.self.query(x).view(split).transpose(1, 2)
        k = self.self.key(kv).view(b, lk, self.heads, -1).transpose(1, 2)
        v = self.self.value(kv).view(b, lk, self.heads, -1).transpose(1, 2)
        mask = None if kv_mask is None else kv_mask[:, None, None, :].bool()
        drop = self.dropout if self.training else 0.0
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.output(h.transpose(1, 2).reshape(b, lq, d), x)


class FusionLayer(nn.Module):
    """Self-attention over text, cross-attention to image patches, feed-forward."""

    def __init__(
        self, hidden: int, heads: int, intermediate: int, image_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.attention = Attention(hidden, heads, hidden, dropout)
        self.crossattention = Attention(hidden, heads, image_dim, dropout)
        self.intermediate = _Intermediate(hidden, intermediate)
        self.output = _Output(intermediate, hidden, dropout)

    def forward(
        self, text: Tensor, text_mask: Tensor, image: Tensor | None, image_mask: Tensor | None
    ) -> Tensor:
        """Without ``image`` the cross-attention is skipped: the layer is then a BERT layer
        (what the warm start trains, as ALBEF's fusion starts from BERT's top layers)."""
        h = self.attention(text, text, text_mask)
        if image is not None:
            h = self.crossattention(h, image, image_mask)
        return self.output(F.gelu(self.intermediate.dense(h)), h)


class FusionEncoder(nn.Module):
    def __init__(
        self,
        num_layers: int,
        hidden: int,
        heads: int,
        intermediate: int,
        image_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            FusionLayer(hidden, heads, intermediate, image_dim, dropout) for _ in range(num_layers)
        )

    def forward(
        self, text: Tensor, text_mask: Tensor, image: Tensor | None,
        image_mask: Tensor | None = None,
    ) -> Tensor:
        for layer in self.layer:
            text = layer(text, text_mask, image, image_mask)
        return text


def init_bert_style(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_cross_attention_lecun(fusion: FusionEncoder, generator: torch.Generator | None = None
                               ) -> None:
    """N(0, 1/fan_in) for the cross-attention's query, key, value and output weights.

    Under BERT's N(0, 0.02) the image reaches the fused states through value and output
    projections that each scale it by about 0.02 sqrt(fan_in) (0.16 at width 64): the image
    explains under 0.2% of the fused readouts' spread at step 0 (``bench/fusion_stability.py
    --probe``), and each of the two matrices' gradients is proportional to the other's small
    weights, a saddle that ITM leaves late or never. LeCun's scale keeps each projection
    variance-preserving at any width, so the image path starts at the size of the residual."""
    with torch.no_grad():
        for layer in fusion.layer:
            assert isinstance(layer, FusionLayer)  # nn.ModuleList types its items as Module
            att = layer.crossattention
            for linear in (att.self.query, att.self.key, att.self.value, att.output.dense):
                std = 1.0 / math.sqrt(linear.in_features)
                linear.weight.normal_(0.0, std, generator=generator)


def load_fusion_from_bert(fusion: FusionEncoder, bert_state: dict[str, Tensor], first: int) -> int:
    """Copy BERT layers ``first..first+n`` into the fusion layers (cross-attention stays new).

    Returns how many tensors were copied.
    """
    copied = 0
    with torch.no_grad():
        for i, layer in enumerate(fusion.layer):
            prefix = f"encoder.layer.{first + i}."
            for name, param in layer.state_dict().items():
                src = bert_state.get(prefix + name)
                if src is not None and src.shape == param.shape:
                    layer.get_parameter(name).copy_(src)
                    copied += 1
    return copied
