"""Training-step throughput of the pretraining core, as a ratio to this machine's matmul peak.

For each preset: samples/s of full training steps (forward, backward, AdamW, EMA update) on
synthetic batches of the preset's shapes, the model FLOPs of one step counted by PyTorch's
FlopCounterMode, and achieved FLOP/s divided by the peak of a plain large matmul measured in the
same process, with the same threads and dtype. CPU: tiny and small. CUDA (when present): base in
bf16 as well.

    python bench/trainer.py [--presets tiny small] [--steps 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from pathlib import Path

# This file is named like the package it measures; keep its folder off the import path.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from trainer.config import build_config  # noqa: E402
from trainer.model.forward import Batch, VocabInfo  # noqa: E402
from trainer.model.pretrainer import Pretrainer  # noqa: E402


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, seconds: float = 2.0) -> float:
    """FLOP/s of an n x n x n matmul, the best of repeated timed bursts."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        sync(device)
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0))
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def synthetic_batch(cfg, vocab: VocabInfo, device: torch.device) -> Batch:  # noqa: ANN001
    b, s, length = cfg.data.batch_size, cfg.data.image_size, cfg.data.max_text_len
    ids = torch.randint(5, vocab.size, (b, length))
    ids[:, 0] = vocab.cls_id
    return Batch(torch.randn(b, 3, s, s), ids, torch.ones(b, length, dtype=torch.long),
                 torch.arange(b)).to(device)


def bench_preset(name: str, device: torch.device, steps: int, bf16: bool) -> dict:
    cfg = build_config(name)
    vocab = VocabInfo(size=cfg.data.vocab_size, pad_id=0, cls_id=2, sep_id=3, mask_id=4, unk_id=1)
    torch.manual_seed(0)
    pt = Pretrainer(cfg, vocab).to(device)
    opt = torch.optim.AdamW(pt.parameter_groups(0.02), lr=1e-4)
    batch = synthetic_batch(cfg, vocab, device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        with amp:
            out = pt(batch, alpha_ramp=1.0, step=0)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    dt = (time.perf_counter() - t0) / steps
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = matmul_peak(device, dtype, 4096 if device.type == "cuda" else 1024)
    return {
        "preset": name, "device": device.type, "dtype": str(dtype).removeprefix("torch."),
        "batch": cfg.data.batch_size, "samples_per_s": round(cfg.data.batch_size / dt, 1),
        "step_gflop": round(flops / 1e9, 2), "achieved_tflops": round(flops / dt / 1e12, 4),
        "matmul_peak_tflops": round(peak / 1e12, 4), "ratio_to_peak": round(flops / dt / peak, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="*", default=None)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    rows = []
    cpu = torch.device("cpu")
    for name in args.presets or ["tiny", "small"]:
        rows.append(bench_preset(name, cpu, args.steps, bf16=False))
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        for name in args.presets or ["small", "base"]:
            rows.append(bench_preset(name, gpu, args.steps, bf16=True))
    print(json.dumps({"threads": torch.get_num_threads(), "machine": platform.machine(),
                      "torch": torch.__version__, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
