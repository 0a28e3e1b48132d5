"""What a trial costs: samples seen, training FLOPs and training wall time.

An ablation's arms rarely cost the same: ITM with hard negatives runs an extra fusion pass,
VILLA several adversarial ones. A comparison that shows an effect without its price invites the
wrong conclusion, and "same steps" is not "same compute". FLOPs are counted by PyTorch's own
``FlopCounterMode`` (matmuls, convolutions and attention, forward and backward) on one
optimizer step taken by a throwaway copy of the model on the trial's first batch, so measuring
moves no weight, queue, EMA copy or random stream of the real run.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable

import torch
from torch.utils.flop_counter import FlopCounterMode

from trainer.model.forward import Batch
from trainer.model.pretrainer import Pretrainer
from trainer.streams import RandomStreams


def step_flops(
    pretrainer: Pretrainer,
    micro_batches: Iterable[Batch],
    *,
    seed: int,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> int:
    """FLOPs of one optimizer step (forward and backward of every micro-batch) of a copy of
    ``pretrainer``; the caller's global RNG state is restored afterwards."""
    probe = copy.deepcopy(pretrainer)
    probe.streams = RandomStreams(seed)
    probe.train()
    counter = FlopCounterMode(display=False)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), counter:
        for batch in micro_batches:
            with autocast():
                out = probe(batch, alpha_ramp=1.0, step=0)
            out.loss.backward()
    return int(counter.get_total_flops())


def steps_for_flops(budget: float, per_step: int, cap: int) -> int:
    """Steps a FLOPs budget buys (at least one, at most ``cap``)."""
    if per_step <= 0:
        return cap
    return max(1, min(cap, int(budget // per_step)))
