"""The training process's side of the input pipeline: it takes each planned micro-batch from
the DataLoader (``trainer.data.pipeline``), checks it is the one the sampler expects, adds the
captions (swapped "left"/"right" where augmentation flipped the image) and moves it to the
device (pinned memory, non-blocking copies; normalised there, so uint8 crosses the bus).

It also keeps the count of unreadable images, the metric a trial logs, and stops the trial with
an error naming ``data.max_bad_fraction`` once they pass it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from trainer import storage
from trainer.config import TrainConfig
from trainer.data import Benchmark
from trainer.data.augment import flips, swap_left_right
from trainer.data.pipeline import BadDataError, PairImages, Plan, loader
from trainer.data.types import normalize
from trainer.distributed import DataParallel
from trainer.model.forward import Batch


class Feeder:
    """Training batches for one trial, in the sampler's order, from ``start(state)`` on."""

    def __init__(self, cfg: TrainConfig, seed: int, bench: Benchmark,
                 text: tuple[torch.Tensor, torch.Tensor], dp: DataParallel | None,
                 device: torch.device, histograms: torch.Tensor | None) -> None:
        data = cfg.data
        if data.augment and histograms is not None:
            raise ValueError("data.augment: an enabled objective reads the patch labels of the "
                             "un-augmented images; turn one of them off")
        split = bench.train
        self.cfg, self.seed, self.split, self.dp, self.device = cfg, seed, split, dp, device
        self.histograms = histograms
        self.ids, self.mask = text
        self.flip_ids, self.flip_mask = self.ids, self.mask
        if data.augment:  # captions that read differently mirrored, tokenised once
            swapped = [swap_left_right(c) for c in split.captions]
            changed = [i for i, (a, b) in enumerate(zip(split.captions, swapped, strict=True))
                       if a != b]
            self.flip_ids, self.flip_mask = self.ids.clone(), self.mask.clone()
            if changed:
                ids, mask = bench.tokenize([swapped[i] for i in changed])
                self.flip_ids[changed], self.flip_mask[changed] = ids, mask
        self.dataset = PairImages(split.source, split.caption_image, data.image_size,
                                  augment=data.augment, seed=seed)
        self.bad: set[int] = set()
        """Images of the split found unreadable while training (by this worker)."""
        self._it: Iterator[dict[str, Any]] | None = None

    @property
    def started(self) -> bool:
        return self._it is not None

    @property
    def skipped_index(self) -> int:
        return sum(self.split.skipped.values())

    def start(self, state: dict[str, int], bad: list[int] | None = None) -> None:
        """Begin at sampler position ``state`` (a checkpoint's), knowing ``bad`` already."""
        self.bad.update(bad or [])
        data, cuda = self.cfg.data, self.device.type == "cuda"
        plan = Plan(len(self.split.captions), data.batch_size, self.seed, state,
                    None if self.dp is None else self.dp.shard)
        remote = any(storage.is_remote(s) for s in
                     (data.train_shards or "").split("::") if data.dataset == "webdataset")
        self._it = loader(self.dataset, plan, workers=data.num_workers,
                          prefetch=data.prefetch_factor, pin_memory=cuda, spawn=remote)

    def stop(self) -> None:
        self._it = None  # the DataLoader's workers end with its iterator

    def text(self, rows: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cfg.data.augment:
            return self.ids[rows], self.mask[rows]
        flipped = torch.tensor([flips(self.seed, epoch, int(r)) for r in rows], dtype=torch.bool)
        ids = torch.where(flipped[:, None], self.flip_ids[rows], self.ids[rows])
        mask = torch.where(flipped[:, None], self.flip_mask[rows], self.mask[rows])
        return ids, mask

    def _check(self, item: dict[str, Any]) -> None:
        self.bad.update(item["bad"])
        seen = self.split.seen or self.split.num_images
        skipped = self.skipped_index + len(self.bad)
        if item["images"] is None or skipped > self.cfg.data.max_bad_fraction * seen:
            raise BadDataError(
                f"data.max_bad_fraction: {skipped} of the {seen} training samples are "
                f"unreadable ({self.skipped_index} when the data was read, {len(self.bad)} "
                f"image(s) while training), over the {self.cfg.data.max_bad_fraction:g} allowed"
            )

    def next(self, idx: torch.Tensor, epoch: int) -> Batch:
        """The micro-batch of global pairs ``idx`` (epoch ``epoch``): this worker's rows."""
        if self._it is None:
            raise RuntimeError("Feeder.start was not called")
        item = next(self._it)
        planned = idx if self.dp is None else self.dp.shard(idx)
        if item["epoch"] != epoch or item["planned"] != planned.tolist():
            raise RuntimeError("the input pipeline fell out of step with the sampler")
        self._check(item)
        length = int(self.text(idx, epoch)[1].sum(dim=1).max())  # the same on every worker
        rows = torch.tensor(item["rows"], dtype=torch.long)
        ids, mask = self.text(rows, epoch)
        image_ids = self.split.caption_image[rows]
        dev = self.device
        hist = None if self.histograms is None else self.histograms[image_ids].to(dev)
        return Batch(
            normalize(item["images"].to(dev, non_blocking=True)),
            ids[:, :length].to(dev, non_blocking=True),
            mask[:, :length].to(dev, non_blocking=True),
            image_ids.to(dev, non_blocking=True),
            patch_histograms=hist,
        )

    def logs(self) -> dict[str, float]:
        """Skip counts for the trial's metrics (decode skips summed over data-parallel
        workers once averaged by ``DataParallel.mean_logs``)."""
        world = 1 if self.dp is None else self.dp.world
        return {"data_skipped_read": float(self.skipped_index),
                "data_skipped_decode": float(len(self.bad) * world)}
