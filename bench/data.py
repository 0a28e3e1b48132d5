"""The input pipeline against the trainer it feeds, measured side by side in one run.

1. JPEG shards made from the `shapes` benchmark (``trainer.data.convert``), rendered at
   ``--source-size`` px (a photo-sized source, so decode and resize cost what they do on real data).
2. Decoders on those JPEGs, decode + resize to the `base` image size: PIL, PIL with draft mode
   (what the pipeline uses), simplejpeg when it is installed (it is not a dependency).
3. The pipeline alone (decode + ALBEF augmentation + stack, `base` image size) with 0, 1 and 2
   DataLoader workers: samples/s, and 2 workers / 0 (budget: >= 1.7 on a 2-core machine).
4. The trainer's own consumption on this machine: samples/s of `Trainer.train_step` for the
   `small` and `base` presets on a prepared batch (no input cost), and the pipeline's rate as
   a multiple of it.
5. The workers (cores) one GPU needs for 1,800 samples/s at `base`: 1,800 / the per-worker rate.

``--device cuda`` (bench/device_check.sh) instead feeds `base` on the GPU from the pipeline with
``--workers`` workers: samples/s and the share of the time the loop waited for data.
Prints a JSON document and a markdown table. ``--quick``: a smoke run (small sizes).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.config import build_config  # noqa: E402
from trainer.data.benchmark import load_splits  # noqa: E402
from trainer.data.convert import convert  # noqa: E402
from trainer.data.decode import open_rgb, squash  # noqa: E402
from trainer.data.pipeline import PairImages, Plan, loader  # noqa: E402
from trainer.loop import Trainer  # noqa: E402

TARGET = 1800.0


def make_shards(tmp: Path, images: int, source_size: int) -> dict[str, str]:
    cfg = build_config("base", dotted={
        "data.root": str(tmp / "shapes"), "data.image_size": source_size,
        "data.num_train_images": images, "data.num_val_images": 8, "data.num_test_images": 8,
        "data.captions_per_image": 1, "init.warm_start": False})
    return convert(cfg.data, tmp / "shards", per_shard=max(8, images // 4))


def decoders(jpegs: list[bytes], size: int) -> dict[str, float]:
    """Images/s of decode + resize to ``size`` for each decoder available."""
    def pil(data: bytes) -> object:
        return squash(open_rgb(data, size, draft=False), size)

    def draft(data: bytes) -> object:
        return squash(open_rgb(data, size, draft=True), size)

    ways = {"pil": pil, "pil_draft": draft}
    try:
        import simplejpeg

        def sj(data: bytes) -> object:
            arr = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=size,
                                         min_width=size)
            return Image.fromarray(arr).resize((size, size), Image.Resampling.BICUBIC)
        ways["simplejpeg"] = sj
    except ImportError:
        pass
    out = {}
    for name, fn in ways.items():
        fn(jpegs[0])
        t = time.perf_counter()
        for data in jpegs:
            fn(data)
        out[name] = len(jpegs) / (time.perf_counter() - t)
    return out


def pipeline_rate(split, size: int, batch: int, batches: int, workers: int) -> float:
    dataset = PairImages(split.source, split.caption_image, size, augment=True, seed=0)
    plan = Plan(len(split), batch, 0, {"epoch": 0, "offset": 0})
    it = loader(dataset, plan, workers=workers, prefetch=2, pin_memory=False)
    for _ in range(workers + 2):  # workers started, every op's first call made
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batch * batches / (time.perf_counter() - t)
    del it
    return rate


def step_rate(preset: str, tmp: Path, batch: int, steps: int) -> float:
    """Samples/s of the trainer's step on one prepared batch (the input costs nothing)."""
    cfg = build_config(preset, dotted={
        "data.root": str(tmp / f"shapes-{preset}"), "data.num_train_images": max(16, batch * 2),
        "data.num_val_images": 4, "data.num_test_images": 4, "data.batch_size": batch,
        "init.warm_start": False, "runtime.device": "cpu",
        "objectives.itc.queue_size": max(batch * 2, 16) if preset != "tiny" else 16,
        "runtime.threads": os.cpu_count() or 1})
    trainer = Trainer(cfg, 0, checkpoint_dir=None)
    first = trainer.batch(trainer.sampler.next())
    trainer.micro_batches = lambda: iter([first] * cfg.optim.accumulation_steps)  # type: ignore
    trainer.train_step()
    t = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return batch * cfg.optim.accumulation_steps * steps / (time.perf_counter() - t)


def gpu_feed(tmp: Path, patterns: dict[str, str], workers: int, steps: int) -> dict[str, float]:
    """`base` on the GPU fed from the shards: samples/s and the share of time spent waiting."""
    cfg = build_config("base", dotted={
        "data.dataset": "webdataset", "data.root": str(tmp / "cache"), "init.warm_start": False,
        **{f"data.{s}_shards": p for s, p in patterns.items()},
        "data.augment": True, "data.num_workers": workers, "runtime.device": "cuda"})
    trainer = Trainer(cfg, 0, checkpoint_dir=None)
    feeder = trainer.feeder
    waited = [0.0]
    inner = feeder.next

    def timed(idx: torch.Tensor, epoch: int):  # type: ignore[no-untyped-def]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = inner(idx, epoch)
        waited[0] += time.perf_counter() - t0
        return out
    feeder.next = timed  # type: ignore[method-assign]
    for _ in range(3):
        trainer.train_step()
    torch.cuda.synchronize()
    waited[0] = 0.0
    t = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    torch.cuda.synchronize()
    wall = time.perf_counter() - t
    return {"samples_per_s": cfg.samples_per_step * steps / wall,
            "input_wait_fraction": waited[0] / wall, "gpu_busy_fraction": 1 - waited[0] / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: small sizes")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--workers", type=int, default=8, help="--device cuda: DataLoader workers")
    ap.add_argument("--source-size", type=int, default=None)
    args = ap.parse_args()
    q = args.quick
    size = build_config("base").data.image_size
    source = args.source_size or (320 if q else 512)
    images, batch, batches = (64, 8, 3) if q else (512, 32, 12)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        patterns = make_shards(tmp, images, source)
        if args.device == "cuda":
            print(json.dumps(gpu_feed(tmp, patterns, args.workers, 10 if q else 40), indent=2))
            return
        split = load_splits(build_config("base", dotted={
            "data.dataset": "webdataset", "init.warm_start": False,
            **{f"data.{s}_shards": p for s, p in patterns.items()}}).data)["train"]
        jpegs = [split.source._bytes(i) for i in range(min(len(split), 64))]  # type: ignore
        Image.open(io.BytesIO(jpegs[0])).verify()
        result: dict[str, object] = {"image_size": size, "source_size": source,
                                     "cores": os.cpu_count(), "quick": q}
        result["decode_per_s"] = decoders(jpegs, size)
        rates = {w: pipeline_rate(split, size, batch, batches, w) for w in (0, 1, 2)}
        result["pipeline_per_s"] = rates
        result["two_workers_over_none"] = rates[2] / rates[0]
        steps = {"small": step_rate("small", tmp, 4 if q else 16, 1 if q else 3),
                 "base": step_rate("base", tmp, 2 if q else 4, 1 if q else 2)}
        result["trainer_step_per_s"] = steps
        result["pipeline2_over_step"] = {p: rates[2] / r for p, r in steps.items()}
        per_worker = max(rates[1], rates[0])
        result["workers_for_1800_per_s"] = math.ceil(TARGET / per_worker)
    print(json.dumps(result, indent=2))
    print("\n| what | samples/s | ratio |\n| --- | --- | --- |")
    for w, r in rates.items():
        print(f"| pipeline, {w} workers | {r:.1f} | {r / rates[0]:.2f}x of 0 workers |")
    for p, r in steps.items():
        print(f"| trainer step, {p} (CPU) | {r:.2f} | pipeline(2) = {rates[2] / r:.1f}x |")
    print(f"\nworkers (cores) for {TARGET:.0f} samples/s at base ({size}px): "
          f"{result['workers_for_1800_per_s']} (per worker {per_worker:.1f}/s)")


if __name__ == "__main__":
    main()
