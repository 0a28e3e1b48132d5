"""Fingerprints of what a trial's seed controls, so a comparison can verify its pairing.

A paired test over seeds assumes the two arms at seed s shared their randomness: the same data
order, the same initial weights where they have the same parts, the same masking draws. A spec
can break that without anyone noticing (another batch size reorders the data, another warm start
or width changes the weights). Each trial records short hashes of these; the analysis pairs two
arms only where every fingerprint both have agrees, and says which one differed otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from trainer.streams import RandomStreams

DATA_ORDER = "data_order"
INIT_PREFIX = "init."
STREAM_PREFIX = "stream."


def order_fingerprint(permutation: torch.Tensor, batch_size: int,
                      samples: Sequence[str] | None = None) -> str:
    """The first epoch's order of training pairs, cut into batches of ``batch_size``; with
    ``samples`` (what each pair index is: sharded data), the pairs themselves, so the same
    permutation over other shards, or the same shards listed in another order, differs."""
    h = hashlib.sha256(f"batch={batch_size};".encode())
    h.update(permutation.to(torch.int64).numpy().tobytes())
    if samples is not None:
        h.update("\0".join(samples).encode())
    return h.hexdigest()[:16]


def weights_fingerprint(module: nn.Module) -> str:
    """Every parameter and buffer of ``module``: names, shapes, dtypes and values."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def trial_fingerprints(
    model: nn.Module, objectives: dict[str, nn.Module], streams: RandomStreams,
    permutation: torch.Tensor, batch_size: int, samples: Sequence[str] | None = None,
) -> dict[str, str]:
    """``data_order``; ``init.model.<part>`` per top-level part of the model and
    ``init.objective.<name>`` per objective with parameters (as the trial starts, warm start
    loaded); ``stream.<name>`` per enabled objective's random stream."""
    prints = {DATA_ORDER: order_fingerprint(permutation, batch_size, samples)}
    for part, child in model.named_children():
        if child.state_dict():
            prints[f"{INIT_PREFIX}model.{part}"] = weights_fingerprint(child)
    for name, objective in objectives.items():
        if any(p.numel() for p in objective.parameters()):
            prints[f"{INIT_PREFIX}objective.{name}"] = weights_fingerprint(objective)
        prints[f"{STREAM_PREFIX}{name}"] = streams.fingerprint(name)
    return prints
