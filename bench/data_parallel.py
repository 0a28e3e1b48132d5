"""Training throughput of one trial on 1 vs 2 data-parallel CPU workers, same global batch.

Each configuration trains the tiny recipe (ITC + ITM with hard negatives + MLM, the `tiny`
preset's model) on a small `shapes` set for ``--steps`` optimizer steps of the same global
batch: 1 worker with 1 thread, 1 worker with as many threads as the 2-worker run has in all,
and 2 gloo workers on 127.0.0.1 with 1 thread each and half the batch each
(``trainer.distributed``). Samples/s is the trainer's own (rank 0's: global batch x steps over
wall time), the median over its logging windows after the first, evaluation and start-up
excluded; all three side by side in one run.

    python bench/data_parallel.py [--steps 30] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

# bench/trainer.py is named like the package it measures; keep this folder off the import path.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from service.stack.processes import free_port  # noqa: E402
from trainer.config import TrainConfig, build_config  # noqa: E402
from trainer.loop import Trainer  # noqa: E402


def config(root: Path, steps: int, batch: int, threads: int) -> TrainConfig:
    return build_config("tiny", dotted={
        "data.root": str(root), "data.num_train_images": 512, "data.num_val_images": 8,
        "data.num_test_images": 16, "data.captions_per_image": 2, "data.batch_size": batch,
        "schedule.steps": steps, "schedule.warmup_steps": 2,
        "runtime.log_every": max(1, steps // 6),
        "runtime.checkpoint_every": steps, "runtime.threads": threads, "eval.rerank_k": 4,
        "eval.batch_size": 16, "init.warm_start": False,
    })


def samples_per_s(cfg: TrainConfig, seed: int = 0) -> float:
    """The median over the logging windows after the first (warm-up) one."""
    trainer = Trainer(cfg, seed, checkpoint_dir=None)
    windows = [v for _, v in trainer.run().history["samples_per_s"]]
    return statistics.median(windows[1:] or windows)


def _worker(rank: int, world: int, port: int, cfg_json: str, out: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        rate = samples_per_s(TrainConfig.model_validate_json(cfg_json))
        if rank == 0:
            Path(out).write_text(json.dumps(rate))
    finally:
        dist.destroy_process_group()


def data_parallel(cfg: TrainConfig, world: int) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rate.json")
        mp.start_processes(_worker, args=(world, port, cfg.model_dump_json(), out),
                           nprocs=world, start_method="spawn")
        return float(json.loads(Path(out).read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64, help="the global batch")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    w = args.workers
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        samples_per_s(config(root, 1, args.batch, 1))  # builds the data set once, untimed
        for label, workers, threads in [("1 worker x 1 thread", 1, 1),
                                        (f"1 worker x {w} threads", 1, w),
                                        (f"{w} workers x 1 thread", w, 1)]:
            cfg = config(root, args.steps, args.batch, threads)
            rate = samples_per_s(cfg) if workers == 1 else data_parallel(cfg, workers)
            rows.append({"run": label, "global_batch": args.batch,
                         "per_worker_batch": args.batch // workers, "samples_per_s": rate})
            print(f"{label:24s} global batch {args.batch:4d}: {rate:8.1f} samples/s",
                  flush=True)
    print(json.dumps({"cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                      "torch": torch.__version__, "steps": args.steps, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
