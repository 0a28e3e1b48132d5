"""The training loop: one TrainConfig and a seed in, retrieval metrics out.

CPU or CUDA picked automatically (bf16 autocast and optional torch.compile on CUDA), gradient
accumulation, complete atomic checkpoints with exact resume, determinism on CPU, and a clear
error when the loss diverges.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from trainer.checkpoint import load_latest, rng_state, save_atomic, set_rng_state
from trainer.config import RuntimeConfig, TrainConfig
from trainer.cost import step_flops, steps_for_flops
from trainer.data import Benchmark, ImageTextSplit, load_benchmark, patch_histograms
from trainer.distributed import DataParallel
from trainer.evaluate import RetrievalResult, evaluate_retrieval
from trainer.feeder import Feeder
from trainer.fingerprints import trial_fingerprints
from trainer.model.forward import Batch
from trainer.model.pretrainer import Pretrainer, StepOutput
from trainer.sampler import PairSampler
from trainer.streams import RandomStreams, derive_seed
from trainer.warm_start import ensure_warm_start, vocab_info


class TrialDiverged(RuntimeError):
    """The loss became NaN or infinite: final, retrying the same config cannot help."""


@dataclass
class Progress:
    step: int
    total_steps: int
    metrics: dict[str, float]


@dataclass
class TrainOutcome:
    metrics: dict[str, float]
    protocol: str
    steps: int
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    """``cost_samples``, ``cost_flops`` (training), ``cost_flops_per_step``, ``cost_train_s``."""
    fingerprints: dict[str, str] = field(default_factory=dict)
    """What the seed controlled (``trainer.fingerprints``): the analysis verifies pairing."""


class Logger(Protocol):
    """Where the loop reports scalars; the MLflow run implements it, tests may pass None."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...


def pick_device(runtime: RuntimeConfig) -> torch.device:
    if runtime.device == "cuda" or (runtime.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_for(device: torch.device, runtime: RuntimeConfig) -> contextlib.AbstractContextManager:
    bf16 = runtime.precision == "bf16" or (runtime.precision == "auto" and device.type == "cuda")
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Holds everything one run needs; ``run()`` trains to the end (resuming if it can)."""

    def __init__(
        self,
        cfg: TrainConfig,
        seed: int,
        *,
        checkpoint_dir: str | Path | None,
        logger: Logger | None = None,
        progress: Callable[[Progress], None] | None = None,
        benchmark: Benchmark | None = None,
    ) -> None:
        self.cfg, self.seed = cfg, seed
        self.checkpoint_dir = checkpoint_dir
        self.dp = DataParallel.current()
        """Data-parallel workers (``trainer.distributed``): each runs this trainer on its shard
        of every global batch; rank 0 alone logs, reports and writes checkpoints."""
        if self.dp is not None:
            self.dp.shard_size(cfg.data.batch_size)
            if self.dp.rank:
                logger = progress = None
        self.logger, self.progress = logger, progress
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        self.device = pick_device(cfg.runtime)
        self.bench = benchmark or load_benchmark(cfg.data)
        self.train_split = self.bench.train
        self.train_ids, self.train_mask = self.bench.tokenize(self.train_split.captions)
        # before seeding: computing a missing warm start must not shift the trial's RNG stream
        warm = ensure_warm_start(cfg, self.bench) if cfg.init.warm_start else None
        seed_everything(seed)
        pretrainer = Pretrainer(cfg, vocab_info(self.bench))
        if warm is not None:
            pretrainer.start_from(warm)
        self.warm_start_key = None if warm is None else warm.key
        self.pretrainer = pretrainer.to(self.device)
        # the pretrainer, or its compiled form: called as ``Pretrainer.forward``
        self.step_fn: Callable[..., StepOutput] = self.pretrainer
        if cfg.runtime.compile and self.device.type == "cuda":
            self.step_fn = torch.compile(self.pretrainer)
        self.sampler = PairSampler(len(self.train_split.captions), cfg.data.batch_size, seed)
        self.train_patch_histograms = self._patch_histograms(self.train_split)
        self.feeder = Feeder(cfg, seed, self.bench, (self.train_ids, self.train_mask), self.dp,
                             self.device, self.train_patch_histograms)
        first = PairSampler(len(self.train_split.captions), cfg.data.batch_size, seed)
        first_batches = [self.batch(first.next(), whole=True)  # the global batch's FLOPs
                         for _ in range(cfg.optim.accumulation_steps)]
        self.flops_per_step = step_flops(
            self.pretrainer, first_batches,
            seed=seed, autocast=lambda: autocast_for(self.device, cfg.runtime),
        )
        self.total_steps = cfg.planned_steps
        if cfg.schedule.budget_flops is not None:
            self.total_steps = steps_for_flops(
                cfg.schedule.budget_flops, self.flops_per_step, cfg.schedule.steps
            )
        self.streams = RandomStreams(seed)
        self.pretrainer.streams = self.streams
        self.fingerprints = trial_fingerprints(
            self.pretrainer.model, dict(self.pretrainer.objectives.items()), self.streams,
            first.permutation(), cfg.data.batch_size, self._samples(),
        )
        self.pretrainer.data_parallel = self.dp
        if self.dp is not None and self.dp.rank:  # its own dropout draws (same init as rank 0)
            torch.manual_seed(derive_seed(seed, f"torch@rank{self.dp.rank}"))
        self.optimizer = torch.optim.AdamW(
            self.pretrainer.parameter_groups(cfg.optim.weight_decay),
            lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps,
        )
        self.scheduler = get_cosine_with_min_lr_schedule_with_warmup(
            self.optimizer,
            num_warmup_steps=cfg.schedule.warmup_steps,
            num_training_steps=self.total_steps,
            min_lr_rate=cfg.schedule.min_lr_ratio,
        )
        self.step = 0
        self.train_seconds = 0.0
        self.history: dict[str, list[tuple[int, float]]] = {}

    # ---- schedule ---------------------------------------------------------------------------
    @property
    def alpha_ramp_steps(self) -> int:
        """ALBEF ramps alpha linearly over the first epoch (in optimizer steps)."""
        if self.cfg.schedule.alpha_ramp_steps is not None:
            return self.cfg.schedule.alpha_ramp_steps
        return max(1, self.sampler.batches_per_epoch // self.cfg.optim.accumulation_steps)

    def alpha_ramp(self, step: int) -> float:
        """Fraction of each objective's distillation alpha in force at ``step``."""
        ramp = self.alpha_ramp_steps
        return 1.0 if ramp == 0 else min(1.0, step / ramp)

    # ---- checkpoints ------------------------------------------------------------------------
    def save(self) -> None:
        if self.checkpoint_dir is None:
            return
        per_rank = {}
        if self.dp is not None:  # every worker's own RNG and streams, written by rank 0
            per_rank["ranks"] = self.dp.gather_objects(
                {"rng": rng_state(), "streams": self.streams.state()})
            if self.dp.rank:
                return
        save_atomic(
            {
                **per_rank,
                "step": self.step,
                "model": self.pretrainer.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "sampler": self.sampler.state(),
                "data_bad": sorted(self.feeder.bad),
                "rng": rng_state(),
                "streams": self.streams.state(),
                "train_seconds": self.train_seconds,
                "history": self.history,
                "config_hash": self.cfg.config_hash(),
                "seed": self.seed,
            },
            self.checkpoint_dir,
        )

    def try_resume(self) -> bool:
        if self.checkpoint_dir is None:
            return False
        ckpt = load_latest(self.checkpoint_dir)
        if ckpt is None:
            return False
        if ckpt["config_hash"] != self.cfg.config_hash() or ckpt["seed"] != self.seed:
            raise ValueError(
                f"checkpoint in {self.checkpoint_dir} belongs to another config or seed"
            )
        self.pretrainer.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.sampler.load(ckpt["sampler"])
        self.feeder.bad = set(ckpt.get("data_bad", []))
        set_rng_state(ckpt["rng"])
        self.streams.load(ckpt.get("streams", {}))
        ranks = ckpt.get("ranks", [])
        if self.dp is not None and len(ranks) == self.dp.world:  # the same workers: each its own
            set_rng_state(ranks[self.dp.rank]["rng"])
            self.streams.load(ranks[self.dp.rank]["streams"])
        self.train_seconds = float(ckpt.get("train_seconds", 0.0))
        self.history = ckpt["history"]
        self.step = ckpt["step"]
        return True

    # ---- batches ----------------------------------------------------------------------------
    def _samples(self) -> list[str] | None:
        """What each training pair is, for the data-order fingerprint (shards only: other
        datasets keep the fingerprints they had)."""
        if self.cfg.data.dataset != "webdataset":
            return None
        split = self.train_split
        return [f"{split.image_ids[int(i)]}|{c}"
                for i, c in zip(split.caption_image, split.captions, strict=True)]

    def _patch_histograms(self, split: ImageTextSplit) -> torch.Tensor | None:
        """[N,C,P,K] per-image patch label shares, computed once (no RNG), only when an
        enabled objective reads them and the data has label maps."""
        readers = [o for o in self.pretrainer.enabled().values() if o.needs_patch_histograms]
        if not readers or split.label_maps is None:
            return None
        return patch_histograms(split.label_maps, self.cfg.model.vision.patch_size)

    def batch(self, idx: torch.Tensor, *, whole: bool = False) -> Batch:
        """The pairs ``idx`` (a global batch): this data-parallel worker's shard of them unless
        ``whole``, trimmed to the global batch's longest caption (the same on every worker)."""
        length = int(self.train_mask[idx].sum(dim=1).max())  # padding every caption has
        if self.dp is not None and not whole:
            idx = self.dp.shard(idx)
        image_ids = self.train_split.caption_image[idx]
        mask = self.train_mask[idx]
        hist = self.train_patch_histograms
        return Batch(
            self.train_split.load_images(image_ids),
            self.train_ids[idx, :length],
            mask[:, :length],
            image_ids,
            patch_histograms=None if hist is None else hist[image_ids],
        ).to(self.device)

    def micro_batches(self) -> Iterator[Batch]:
        for _ in range(self.cfg.optim.accumulation_steps):
            if not self.feeder.started:  # from the sampler's position (a checkpoint's)
                self.feeder.start(self.sampler.state())
            idx = self.sampler.next()
            yield self.feeder.next(idx, self.sampler.epoch)

    # ---- the loop ---------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        accum = self.cfg.optim.accumulation_steps
        autocast = autocast_for(self.device, self.cfg.runtime)
        ramp = self.alpha_ramp(self.step)
        sums: dict[str, float] = {}
        for batch in self.micro_batches():
            with autocast:
                out = self.step_fn(batch, alpha_ramp=ramp, step=self.step)
            loss = out.loss / accum
            finite = bool(torch.isfinite(loss)) if self.dp is None else self.dp.all_finite(loss)
            if not finite:
                terms = ", ".join(f"{k}={float(v):.4g}" for k, v in out.terms.items())
                raise TrialDiverged(
                    f"diverged at step {self.step + 1}: loss {float(loss.detach())} ({terms})"
                )
            loss.backward()
            for k, v in {"loss": out.loss.detach(), **out.terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v) / accum
            for k, value in out.logs.items():
                sums[k] = sums.get(k, 0.0) + value / accum
        sums.update(self.feeder.logs())
        if self.dp is not None:  # the global batch's gradient and losses
            self.dp.average_gradients(self.pretrainer.parameters())
            sums = self.dp.mean_logs(sums)
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.pretrainer.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        sums["lr"] = self.scheduler.get_last_lr()[0]
        sums["alpha_ramp"] = ramp
        return sums

    def evaluate(self, split: ImageTextSplit) -> RetrievalResult:
        ids, mask = self.bench.tokenize(split.captions)
        return evaluate_retrieval(
            self.pretrainer, split.load_images, split.num_images, ids, mask, split.caption_image,
            rerank_k=self.cfg.eval.rerank_k, batch_size=self.cfg.eval.batch_size,
            device=self.device,
        )

    def record(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.history.setdefault(k, []).append((step, float(v)))
        if self.logger is not None:
            self.logger.log_metrics(metrics, step)

    def run(self) -> TrainOutcome:
        self.try_resume()
        total = self.total_steps
        rt = self.cfg.runtime
        samples = self.cfg.data.batch_size * self.cfg.optim.accumulation_steps
        window_start, window_steps = time.perf_counter(), 0
        self.pretrainer.train()
        while self.step < total:
            started = time.perf_counter()
            logs = self.train_step()
            self.train_seconds += time.perf_counter() - started
            window_steps += 1
            if self.step % rt.log_every == 0 or self.step == total:
                elapsed = time.perf_counter() - window_start
                logs["samples_per_s"] = samples * window_steps / max(elapsed, 1e-9)
                self.record(logs, self.step)
                window_start, window_steps = time.perf_counter(), 0
                if self.progress:
                    self.progress(Progress(self.step, total, logs))
            every = self.cfg.eval.every_steps
            if every and self.step % every == 0 and self.step < total:
                val = self.evaluate(self.bench.val)
                self.record({f"val_{k}": v for k, v in val.metrics.items()}, self.step)
                self.pretrainer.train()
            if self.step % rt.checkpoint_every == 0 or self.step == total:
                self.save()
        self.feeder.stop()
        split = self.bench.test if self.cfg.eval.split == "test" else self.bench.val
        result = self.evaluate(split)
        self.record(result.metrics, self.step)
        final = {**result.metrics, **_final_losses(self.history)}
        cost = self.cost()
        if self.logger is not None:  # not in the history: wall time is not deterministic
            self.logger.log_metrics(cost, self.step)
        if self.progress:
            self.progress(Progress(self.step, total, final))
        return TrainOutcome(final, result.protocol, self.step, self.history, cost,
                            self.fingerprints)

    def cost(self) -> dict[str, float]:
        """What the run took to train (evaluation excluded)."""
        return {
            "cost_samples": float(self.step * self.cfg.samples_per_step),
            "cost_flops": float(self.step * self.flops_per_step),
            "cost_flops_per_step": float(self.flops_per_step),
            "cost_train_s": self.train_seconds,
        }


def _final_losses(history: dict[str, list[tuple[int, float]]]) -> dict[str, float]:
    """The last logged value of each loss term, as ``final_<name>``."""
    return {
        f"final_{k}": v[-1][1]
        for k, v in history.items()
        if k.startswith("loss") and v and math.isfinite(v[-1][1])
    }


def train(
    cfg: TrainConfig,
    seed: int,
    *,
    checkpoint_dir: str | Path | None = None,
    logger: Logger | None = None,
    progress: Callable[[Progress], None] | None = None,
    benchmark: Benchmark | None = None,
) -> TrainOutcome:
    """Train ``cfg`` with ``seed`` to the end, resuming from ``checkpoint_dir`` if it holds one."""
    return Trainer(
        cfg, seed, checkpoint_dir=checkpoint_dir, logger=logger, progress=progress,
        benchmark=benchmark,
    ).run()

