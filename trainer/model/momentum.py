"""Momentum (EMA) copies: ALBEF's momentum encoder, queue keys and distillation teacher."""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def frozen_copy(module: M) -> M:
    """An EMA copy that starts equal to the online module and never receives gradients."""
    clone = copy.deepcopy(module)
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


@torch.no_grad()
def momentum_update(pairs: list[tuple[nn.Module, nn.Module]], decay: float) -> None:
    """EMA: ``m = decay * m + (1 - decay) * online`` for every parameter pair."""
    for online, ema in pairs:
        for p, p_m in zip(online.parameters(), ema.parameters(), strict=True):
            p_m.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
