"""The input pipeline: DataLoader workers decode, resize (or augment) and stack the images of
each micro-batch the sampler plans, ahead of the training process.

Why it keeps the trainer's promises: the plan is the trainer's own ``PairSampler`` (one
permutation per epoch seeded by (seed, epoch)), started from the checkpoint's position, and
each item is one whole micro-batch (this data-parallel rank's rows of it), so a worker reads
exactly the batches the DataLoader hands it (round-robin, returned in order). Ranks read
disjoint rows of each global batch and workers disjoint batches, whose union is the epoch.
Pixels depend on (seed, epoch, pair) only, never on which worker decoded them, so
``data.num_workers`` changes the speed and never a number.

An image that cannot be decoded is replaced, in its batch, by the next readable row of the same
batch (caption and all, so the pair stays a true pair and the batch keeps its size on every
rank); the image is reported back and counted (``Feeder.bad``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from trainer.data.augment import augment
from trainer.data.decode import BadImage, to_tensor
from trainer.data.types import ImageSource
from trainer.sampler import PairSampler

Item = tuple[int, list[int]]
"""(epoch, this rank's pair indices): what a worker is asked to load."""


class BadDataError(ValueError):
    """Too much of the data cannot be read (``data.max_bad_fraction``)."""


class Plan:
    """The micro-batches a trial will consume from ``state`` on, forever: the sampler's global
    batches cut to this rank's rows by ``local``."""

    def __init__(self, num_pairs: int, batch_size: int, seed: int, state: dict[str, int],
                 local: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.args = (num_pairs, batch_size, seed)
        self.state, self.local = dict(state), local

    def __iter__(self) -> Iterator[Item]:
        sampler = PairSampler(*self.args)
        sampler.load(self.state)
        while True:
            idx = sampler.next()
            rows = idx if self.local is None else self.local(idx)
            yield sampler.epoch, rows.tolist()


class PairImages(Dataset[dict[str, Any]]):
    """One item = one micro-batch's images, uint8 ``[B, 3, S, S]`` (normalised on the device)."""

    def __init__(self, source: ImageSource, caption_image: torch.Tensor, size: int, *,
                 augment: bool, seed: int) -> None:
        self.source, self.caption_image = source, caption_image
        self.size, self.augment, self.seed = size, augment, seed

    def image(self, epoch: int, pair: int) -> torch.Tensor:
        i = int(self.caption_image[pair])
        if not self.augment:
            return self.source.row(i)
        return to_tensor(augment(self.source.pil(i), self.size, self.seed, epoch, pair))

    def __getitem__(self, item: Item) -> dict[str, Any]:
        epoch, planned = item
        images: list[torch.Tensor | None] = []
        bad: list[int] = []
        for pair in planned:
            try:
                images.append(self.image(epoch, pair))
            except BadImage:
                images.append(None)
                bad.append(int(self.caption_image[pair]))
        rows = list(planned)
        good = [j for j, im in enumerate(images) if im is not None]
        info = get_worker_info()
        out: dict[str, Any] = {"epoch": epoch, "planned": planned, "bad": bad,
                               "worker": -1 if info is None else info.id}
        if not good:
            return {**out, "rows": rows, "images": None}
        for j, im in enumerate(images):
            if im is None:  # the next readable row of this batch, cyclically
                k = next(g for g in good + [g + len(rows) for g in good] if g > j) % len(rows)
                rows[j], images[j] = rows[k], images[k]
        return {**out, "rows": rows, "images": torch.stack([im for im in images if im is not None])}


def _as_is(item: Any) -> Any:
    """The item is already a whole micro-batch: nothing to collate."""
    return item


def loader(dataset: PairImages, plan: Plan, *, workers: int, prefetch: int,
           pin_memory: bool, spawn: bool = False) -> Iterator[dict[str, Any]]:
    """The DataLoader over ``plan``: ``workers`` processes (0: in this process), each
    ``prefetch`` micro-batches ahead, pinned for a non-blocking copy to the GPU. Its own
    generator: the DataLoader's base seed never consumes the trial's global RNG. ``spawn``:
    fresh worker processes (S3 clients are not safe to use across a fork)."""
    extra: dict[str, Any] = {}
    if workers:
        extra = {"prefetch_factor": prefetch,
                 "multiprocessing_context": "spawn" if spawn else None}
    return iter(DataLoader(
        dataset, batch_size=None, sampler=plan, num_workers=workers, collate_fn=_as_is,
        pin_memory=pin_memory, generator=torch.Generator().manual_seed(0), **extra,
    ))
