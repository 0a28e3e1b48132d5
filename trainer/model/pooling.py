"""Which state of an encoder's output becomes its ITC feature.

ALBEF projects the [CLS] state. From random init that state barely depends on the input (a
fixed token at a fixed position, attending almost uniformly), so in-batch ITC first has to
learn to route content into [CLS] before it can learn anything else; the mean of the content
tokens differs across inputs from step 0. Both are offered so the choice can be ablated.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

Pooling = Literal["cls", "mean"]


def pool_tokens(states: Tensor, how: Pooling, mask: Tensor | None = None) -> Tensor:
    """[B,L,D] -> [B,D]: position 0, or the mean over the positions ``mask`` keeps (all when
    None)."""
    if how == "cls":
        return states[:, 0]
    if mask is None:
        return states.mean(dim=1)
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def pool_image(states: Tensor, how: Pooling) -> Tensor:
    """[B,1+P,D] -> [B,D]: [CLS], or the mean of the patch states (the [CLS] slot left out)."""
    return states[:, 0] if how == "cls" else states[:, 1:].mean(dim=1)
