"""bench/trainer.py's SDPA probe: which fused-attention kernel ran, read from the profiler. The
expected answers come from forcing a backend with PyTorch's own ``sdpa_kernel`` switch, not from
the probe's table."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.trainer import sdpa_kernels, training_step
from trainer.config import build_config


def _attend(mask: torch.Tensor | None = None) -> None:
    q = torch.randn(2, 4, 8, 16, requires_grad=True)
    F.scaled_dot_product_attention(q, q, q, attn_mask=mask).sum().backward()


def test_a_forced_backend_is_what_the_probe_reports() -> None:
    with sdpa_kernel(SDPBackend.MATH):
        assert sdpa_kernels(_attend) == {"math": 1}
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # on CPU: the CPU flash kernel
        assert sdpa_kernels(_attend) == {"flash_cpu": 1}
    mask = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    with sdpa_kernel(SDPBackend.MATH):
        assert sdpa_kernels(lambda: _attend(mask)) == {"math": 1}


def test_no_attention_no_kernel() -> None:
    assert sdpa_kernels(lambda: torch.randn(4, 4).matmul(torch.randn(4, 4))) == {}


def test_every_attention_of_a_training_step_goes_through_sdpa() -> None:
    """On the tiny preset's real step (towers, fusion, momentum copies) the probe reports the
    backend that ran: forcing math moves every call it saw there, at the same count. (It cannot
    see attention written without SDPA: every attention layer of trainer/model/ calls it.)"""
    torch.manual_seed(0)
    step, _ = training_step(build_config("tiny", dotted={"data.batch_size": 4}),
                            torch.device("cpu"))
    default = sdpa_kernels(lambda: step(0))
    with sdpa_kernel(SDPBackend.MATH):
        forced = sdpa_kernels(lambda: step(1))
    assert sum(default.values()) > 0
    assert forced == {"math": sum(default.values())}
