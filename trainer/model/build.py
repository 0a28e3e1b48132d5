"""Which architecture ``model.arch`` names, built from the config (random init or local
pretrained encoders)."""

from __future__ import annotations

from torch import nn

from trainer.config import ModelConfig
from trainer.model.albef import ALBEFModel
from trainer.model.mome import MoMEModel

Architecture = ALBEFModel | MoMEModel
"""Every architecture: each an ``nn.Module`` that implements ``VisionLanguageModel``."""


def build_model(
    cfg: ModelConfig, *, vocab_size: int, image_size: int, max_len: int
) -> Architecture:
    """Pick the architecture named by ``model.arch``."""
    if cfg.arch == "albef":
        return ALBEFModel(cfg, vocab_size=vocab_size, image_size=image_size, max_len=max_len)
    if cfg.arch == "mome":
        return MoMEModel(cfg, vocab_size=vocab_size, image_size=image_size, max_len=max_len)
    raise ValueError(f"model.arch: unknown architecture {cfg.arch!r}")


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters, shared tensors counted once."""
    seen = {id(p): p for p in module.parameters() if p.requires_grad or not trainable_only}
    return sum(p.numel() for p in seen.values())
