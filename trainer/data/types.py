"""The containers the training loop sees: one split of image-caption pairs, and a benchmark.

Captions are the unit of training (one pair per caption); images are fetched per batch with
``split.load_images(split.caption_image[idx])``. Where the pixels come from (an in-memory uint8
tensor for `shapes`, files on disk for real data) is hidden behind ``ImageSource``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image
from transformers import PreTrainedTokenizerFast

from trainer.data.decode import BadImage, open_rgb, squash
from trainer.data.scenes import Scene

LOG = logging.getLogger(__name__)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 in [-1, 1] (mean 0.5, std 0.5 per channel)."""
    return images.to(torch.float32).div_(127.5).sub_(1.0)


class ImageSource(Protocol):
    """Where a split's pixels come from. ``load``: a normalised batch (evaluation);
    ``row``: one uint8 ``[3, S, S]`` image; ``pil``: one decoded image before any resize (what
    augmentation crops). ``row`` and ``pil`` raise ``BadImage`` for an unreadable image."""

    def __len__(self) -> int: ...

    def load(self, index: torch.Tensor) -> torch.Tensor: ...

    def row(self, i: int) -> torch.Tensor: ...

    def pil(self, i: int) -> Image.Image: ...


class TensorImages:
    """Images held in memory as one uint8 tensor ``[N, 3, H, W]`` (the `shapes` benchmark)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def load(self, index: torch.Tensor) -> torch.Tensor:
        return normalize(self.images[index])

    def row(self, i: int) -> torch.Tensor:
        return self.images[i]

    def pil(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i].permute(1, 2, 0).numpy())


class CachedRows:
    """A byte-bounded LRU cache of decoded rows, so evaluation passes and small datasets are
    decoded once while a COCO-sized train split cannot exhaust memory."""

    def __init__(self, size: int, cache_bytes: int) -> None:
        self.size = size
        self.capacity = max(1, cache_bytes // (3 * size * size))
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.unreadable: set[int] = set()

    def cached(self, i: int, decode: Callable[[], torch.Tensor]) -> torch.Tensor:
        hit = self._cache.get(i)
        if hit is not None:
            self._cache.move_to_end(i)
            return hit
        arr = decode()
        self._cache[i] = arr
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return arr

    def load_rows(self, index: torch.Tensor) -> torch.Tensor:
        """A normalised batch; an unreadable image is grey there, logged and kept in
        ``unreadable`` (evaluation and the FLOPs probe; training replaces it, see
        ``trainer.data.pipeline``)."""
        idx = index.reshape(-1).tolist()
        if not idx:
            return torch.empty(0, 3, self.size, self.size)
        return normalize(torch.stack([self._row_or_grey(int(i)) for i in idx]))

    def _row_or_grey(self, i: int) -> torch.Tensor:
        try:
            return self.row(i)  # type: ignore[attr-defined]
        except BadImage as err:
            if i not in self.unreadable:
                LOG.warning("unreadable image %d shown grey: %s", i, err)
            self.unreadable.add(i)
            return torch.full((3, self.size, self.size), 128, dtype=torch.uint8)


class FileImages(CachedRows):
    """Images read from files on demand, RGB, resized (squashed) to ``size`` x ``size``."""

    def __init__(self, paths: Sequence[Path], size: int, cache_bytes: int = 512 << 20) -> None:
        super().__init__(size, cache_bytes)
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def _bytes(self, i: int) -> bytes:
        try:
            return self.paths[i].read_bytes()
        except OSError as err:
            raise BadImage(f"{self.paths[i]}: {err}") from err

    def row(self, i: int) -> torch.Tensor:
        return self.cached(i, lambda: squash(open_rgb(self._bytes(i), draft=False), self.size))

    def pil(self, i: int) -> Image.Image:
        return open_rgb(self._bytes(i))

    def load(self, index: torch.Tensor) -> torch.Tensor:
        return self.load_rows(index)


@dataclass
class ImageTextSplit:
    """One split: images and their captions (several per image)."""

    name: str
    captions: list[str]
    caption_image: torch.Tensor
    """[M] long: index of the image each caption describes."""
    noisy: torch.Tensor
    """[M] bool: True where the caption was deliberately corrupted (train only)."""
    num_images: int
    source: ImageSource
    label_maps: torch.Tensor | None = None
    """`shapes` only: [N, 2, H, W] uint8; channel 0 shape id + 1, channel 1 colour id + 1,
    0 = background. None for real data."""
    scenes: list[Scene] | None = None
    """`shapes` only: the objects of each image (for analysis and tests)."""
    image_group: torch.Tensor | None = None
    """`shapes` only: [N] long; images with the same group id are minimal pairs of each other
    (one binding, relation or attribute differs)."""
    image_ids: list[str] = field(default_factory=list)
    """A stable name per image (file path for real data, ``<split>/<index>`` for shapes,
    ``<shard file>/<key>`` for shards)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Samples left out when the split was read, per reason (shards: ``trainer.data.shards``)."""
    seen: int = 0
    """Samples found when the split was read, readable or not (0: not counted)."""

    def __post_init__(self) -> None:
        if len(self.captions) != len(self.caption_image) or len(self.noisy) != len(self.captions):
            raise ValueError("captions, caption_image and noisy must have the same length")
        if len(self.source) != self.num_images:
            raise ValueError("image source and num_images disagree")

    def __len__(self) -> int:
        return len(self.captions)

    def load_images(self, index: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] float32, normalised to [-1, 1], for image indices ``index``."""
        return self.source.load(torch.as_tensor(index, dtype=torch.long))

    def image_captions(self) -> list[list[int]]:
        """Caption indices per image (what retrieval evaluation needs as ground truth)."""
        out: list[list[int]] = [[] for _ in range(self.num_images)]
        for c, i in enumerate(self.caption_image.tolist()):
            out[i].append(c)
        return out


@dataclass
class Benchmark:
    train: ImageTextSplit
    val: ImageTextSplit
    test: ImageTextSplit
    tokenizer: PreTrainedTokenizerFast
    max_text_len: int = 30

    def split(self, name: str) -> ImageTextSplit:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)

    def tokenize(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids and attention_mask ``[M, max_text_len]``: [CLS] ... [SEP] [PAD]...,
        truncated to max_text_len (the [SEP] is kept)."""
        if not captions:
            empty = torch.zeros(0, self.max_text_len, dtype=torch.long)
            return empty, empty.clone()
        enc = self.tokenizer(
            list(captions), padding="max_length", truncation=True,
            max_length=self.max_text_len, return_tensors="pt",
        )
        return enc["input_ids"].long(), enc["attention_mask"].long()
