"""Training-step throughput of the pretraining core, as a ratio to this machine's matmul peak.

For each preset: samples/s of full training steps (forward, backward, AdamW, EMA update) on
synthetic batches of the preset's shapes, the model FLOPs of one step counted by PyTorch's
FlopCounterMode, and achieved FLOP/s divided by the peak of a plain large matmul measured in the
same process, with the same threads and dtype. CPU: tiny and small. CUDA (when present): small
and base in bf16 as well. Each row also says which fused-attention kernel every
``scaled_dot_product_attention`` call of a step ran (flash, memory-efficient, cuDNN or the math
fallback: the ATen op PyTorch's dispatcher chose, read with its profiler) and, on CUDA, the
peak memory PyTorch allocated during the timed steps. ``--compile`` times the step under
``torch.compile`` (CUDA only, as the trainer's ``runtime.compile``).

``--objective-cost`` instead times one training step of the tiny full recipe (ITC + ITM_hard +
MLM) with each costly add-on switched on, side by side in one process, as a ratio to the step
without it: what VILLA (per adversarial task) and IAIS add to a trial.

    python bench/trainer.py [--presets tiny small] [--steps 20] [--devices cpu cuda] [--compile]
    python bench/trainer.py --objective-cost [--steps 10 --rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

# This file is named like the package it measures; keep its folder off the import path.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import torch  # noqa: E402
import yaml  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
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


SDPA_KERNELS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash_cpu",
    "aten::_scaled_dot_product_efficient_attention": "mem_efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
    "aten::_scaled_dot_product_attention_math": "math",
}
"""The ATen ops ``F.scaled_dot_product_attention`` dispatches a forward call to, by backend."""


def sdpa_kernels(step: Callable[[], None]) -> dict[str, int]:
    """How many of ``step``'s attention calls ran each SDPA backend: the ops PyTorch's profiler
    recorded, so the answer is what ran, not what was asked for (flash silently falls back to
    the memory-efficient kernel or to math when a mask, dtype or head size does not suit it)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    counts = Counter(SDPA_KERNELS[e.name] for e in prof.events() if e.name in SDPA_KERNELS)
    return dict(sorted(counts.items()))


def training_step(cfg, device: torch.device, bf16: bool = False,  # noqa: ANN001
                  compile_model: bool = False, with_losses: bool = False,
                  ) -> tuple[Callable[[int], None], dict[str, list[float]]]:
    """A full training step on one synthetic batch (forward, backward, AdamW), as a function
    of the step number, and the numbers it logs, appended to on every call (with
    ``with_losses``, the total loss and each objective's too). ``compile_model`` runs the
    model's forward under ``torch.compile``."""
    vocab = VocabInfo(size=cfg.data.vocab_size, pad_id=0, cls_id=2, sep_id=3, mask_id=4, unk_id=1)
    torch.manual_seed(0)
    pt = Pretrainer(cfg, vocab).to(device)
    opt = torch.optim.AdamW(pt.parameter_groups(0.02), lr=1e-4)
    batch = synthetic_batch(cfg, vocab, device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    logs: dict[str, list[float]] = {}
    forward = torch.compile(pt) if compile_model else pt

    def step(i: int) -> None:
        with amp:
            out = forward(batch, alpha_ramp=1.0, step=i)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        # the losses only when asked: reading a GPU tensor waits for the device every step
        scalars = {"loss": out.loss.detach(), **out.terms, **out.logs} if with_losses else out.logs
        for key, value in scalars.items():
            logs.setdefault(key, []).append(float(value))

    return step, logs


def bench_preset(name: str, device: torch.device, steps: int, bf16: bool,
                 compile_model: bool = False) -> dict:
    cfg = build_config(name)
    step, _ = training_step(cfg, device, bf16, compile_model)
    for _ in range(3):
        step(0)
    kernels = sdpa_kernels(lambda: step(0))
    counter = FlopCounterMode(display=False)
    with counter:
        step(0)
    flops = counter.get_total_flops()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(0)
    sync(device)
    dt = (time.perf_counter() - t0) / steps
    peak_memory = (round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                   if device.type == "cuda" else None)
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = matmul_peak(device, dtype, 4096 if device.type == "cuda" else 1024)
    return {
        "preset": name, "device": device.type, "dtype": str(dtype).removeprefix("torch."),
        "compiled": compile_model, "batch": cfg.data.batch_size,
        "samples_per_s": round(cfg.data.batch_size / dt, 1),
        "step_gflop": round(flops / 1e9, 2), "achieved_tflops": round(flops / dt / 1e12, 4),
        "matmul_peak_tflops": round(peak / 1e12, 4), "ratio_to_peak": round(flops / dt / peak, 3),
        "sdpa_kernels": kernels, "peak_memory_gib": peak_memory,
    }


ADD_ON_SPEC = Path(__file__).resolve().parent.parent / "experiments/adversarial_and_alignment.yaml"
"""The add-ons are timed on this spec's base recipe."""

ADD_ONS: dict[str, dict[str, object]] = {
    "base (ITC+ITM_hard+MLM)": {},
    "+VILLA on ITM": {"objectives.villa.enabled": True, "objectives.villa.tasks": ["itm"]},
    "+VILLA on ITM and MLM": {"objectives.villa.enabled": True},
    "+IAIS": {"objectives.iais.enabled": True},
    "+VILLA (both) +IAIS": {"objectives.villa.enabled": True, "objectives.iais.enabled": True},
}
"""Dotted overrides on top of the spec's base."""


def objective_cost(steps: int, rounds: int) -> list[dict]:
    """Each add-on's step time as a ratio to the base recipe's. The variants take turns, round
    after round, so a slow spell of the machine hits them all; each ratio is the median over
    the rounds of (variant / base in the same round), with the rounds' range."""
    base = yaml.safe_load(ADD_ON_SPEC.read_text())["base"]
    steppers = {}
    for name, sets in ADD_ONS.items():
        cfg = build_config(base["preset"], dotted={**base.get("set", {}), **sets})
        step, logs = training_step(cfg, torch.device("cpu"))
        for i in range(2):
            step(i)
        logs.clear()
        steppers[name] = (step, logs)
    seconds: dict[str, list[float]] = {name: [] for name in ADD_ONS}
    for _ in range(rounds):
        for name, (step, _logs) in steppers.items():
            t0 = time.perf_counter()
            for i in range(steps):  # alternating parity, as VILLA's modality does
                step(i)
            seconds[name].append((time.perf_counter() - t0) / steps)
    base_s = seconds[next(iter(ADD_ONS))]
    rows = []
    for name, (_step, logs) in steppers.items():
        ratios = [s / b for s, b in zip(seconds[name], base_s, strict=True)]
        mean = {k: sum(v) / len(v) for k, v in logs.items()}
        rows.append({
            "variant": name, "ms_per_step": round(statistics.median(seconds[name]) * 1e3, 1),
            "ratio_to_base": round(statistics.median(ratios), 2),
            "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
            "villa_extra_forwards": mean.get("villa_extra_forwards", 0.0),
            "villa_extra_backwards": mean.get("villa_extra_backwards", 0.0),
            "villa_ms": round(mean.get("villa_seconds", 0.0) * 1e3, 1),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="*", default=None)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--devices", nargs="*", default=["cpu", "cuda"],
                        help="where to time (cuda is skipped when torch sees no GPU)")
    parser.add_argument("--compile", action="store_true",
                        help="the model under torch.compile (CUDA rows only)")
    parser.add_argument("--objective-cost", action="store_true")
    parser.add_argument("--rounds", type=int, default=5, help="--objective-cost: turns taken")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (--objective-cost: 1, as the specs' trials run)")
    args = parser.parse_args()
    if args.threads or args.objective_cost:
        torch.set_num_threads(args.threads or 1)
    if args.objective_cost:
        print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__,
                          "steps": args.steps, "rounds": args.rounds,
                          "results": objective_cost(args.steps, args.rounds)}, indent=2))
        return
    rows = []
    if "cpu" in args.devices:
        cpu = torch.device("cpu")
        for name in args.presets or ["tiny", "small"]:
            rows.append(bench_preset(name, cpu, args.steps, bf16=False))
    gpu_name = None
    if "cuda" in args.devices and torch.cuda.is_available():
        gpu = torch.device("cuda")
        gpu_name = torch.cuda.get_device_name(gpu)
        for name in args.presets or ["small", "base"]:
            rows.append(bench_preset(name, gpu, args.steps, bf16=True,
                                     compile_model=args.compile))
    print(json.dumps({"threads": torch.get_num_threads(), "machine": platform.machine(),
                      "gpu": gpu_name, "torch": torch.__version__, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
