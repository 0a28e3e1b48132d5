"""The containers the training loop sees: one split of image-caption pairs, and a benchmark.

Captions are the unit of training (one pair per caption); images are fetched per batch with
``split.load_images(split.caption_image[idx])``. Where the pixels come from (an in-memory uint8
tensor for `shapes`, files on disk for real data) is hidden behind ``ImageSource``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from transformers import PreTrainedTokenizerFast

from trainer.data.scenes import Scene


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 in [-1, 1] (mean 0.5, std 0.5 per channel)."""
    return images.to(torch.float32).div_(127.5).sub_(1.0)


class ImageSource(Protocol):
    def __len__(self) -> int: ...

    def load(self, index: torch.Tensor) -> torch.Tensor: ...


class TensorImages:
    """Images held in memory as one uint8 tensor ``[N, 3, H, W]`` (the `shapes` benchmark)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def load(self, index: torch.Tensor) -> torch.Tensor:
        return normalize(self.images[index])


class FileImages:
    """Images read from files on demand, RGB, resized (squashed) to ``size`` x ``size``.

    Decoded images are kept in a byte-bounded LRU cache, so evaluation passes and small
    datasets are decoded once while a COCO-sized train split cannot exhaust memory.
    """

    def __init__(self, paths: Sequence[Path], size: int, cache_bytes: int = 512 << 20) -> None:
        self.paths = list(paths)
        self.size = size
        self.capacity = max(1, cache_bytes // (3 * size * size))
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, i: int) -> torch.Tensor:
        hit = self._cache.get(i)
        if hit is not None:
            self._cache.move_to_end(i)
            return hit
        with Image.open(self.paths[i]) as im:
            rgb = im.convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC)
            arr = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)
        self._cache[i] = arr
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return arr

    def load(self, index: torch.Tensor) -> torch.Tensor:
        idx = index.reshape(-1).tolist()
        if not idx:
            return torch.empty(0, 3, self.size, self.size)
        return normalize(torch.stack([self._read(int(i)) for i in idx]))


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
    """A stable name per image (file path for real data, ``<split>/<index>`` for shapes)."""

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
