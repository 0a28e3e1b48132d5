"""``dataset: webdataset``: train, val and test splits from three shard lists.

Each split is its own shard list, read in the order the pattern names its shards and, within a
shard, in tar order; only the training pairs are ever shuffled (by the trainer's sampler), so
validation and test never move. Samples that cannot be read are skipped and counted
(``ImageTextSplit.skipped``); a split where they pass ``data.max_bad_fraction`` is refused
before training starts.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from trainer.config import DataConfig
from trainer.data.decode import BadImage, open_rgb, squash
from trainer.data.records import SPLITS, cap, swap_noise
from trainer.data.shards import RangeReader, ShardError, ShardIndex, index_shards
from trainer.data.types import CachedRows, ImageTextSplit


class ShardImages(CachedRows):
    """The images of a shard index, read one ranged read each, decoded on demand."""

    def __init__(self, index: ShardIndex, size: int, count: int,
                 cache_bytes: int = 512 << 20) -> None:
        super().__init__(size, cache_bytes)
        self.reader = RangeReader(index.shards)
        self.where = list(zip(index.shard[:count], index.offset[:count], index.size[:count],
                              strict=True))
        self.names = index.names[:count]

    def __len__(self) -> int:
        return len(self.where)

    def _bytes(self, i: int) -> bytes:
        try:
            return self.reader.read(*self.where[i])
        except OSError as err:
            raise BadImage(f"{self.names[i]}: {err}") from err

    def row(self, i: int) -> torch.Tensor:
        return self.cached(i, lambda: squash(open_rgb(self._bytes(i), self.size), self.size))

    def pil(self, i: int) -> Image.Image:
        return open_rgb(self._bytes(i))

    def load(self, index: torch.Tensor) -> torch.Tensor:
        return self.load_rows(index)


def split_from_index(index: ShardIndex, cfg: DataConfig, split: str) -> ImageTextSplit:
    """The first ``num_<split>_images`` samples of ``index`` as a split (train: with
    ``caption_noise``), counting what was skipped against ``data.max_bad_fraction``."""
    bad = sum(index.skipped.values())
    if bad > cfg.max_bad_fraction * index.seen:
        raise ShardError(
            f"data.max_bad_fraction: {bad} of the {index.seen} samples of data.{split}_shards "
            f"cannot be read ({dict(index.skipped)}), over the {cfg.max_bad_fraction:g} allowed"
        )
    count = min(len(index), cap(cfg, split))
    captions = [c for caps in index.captions[:count] for c in caps]
    owner = np.repeat(np.arange(count), [len(c) for c in index.captions[:count]])
    noisy = np.zeros(len(captions), dtype=bool)
    if split == "train" and cfg.caption_noise > 0 and count > 1:
        captions, noisy = swap_noise(captions, owner, cfg.caption_noise, cfg.benchmark_seed)
    return ImageTextSplit(
        name=split, captions=captions,
        caption_image=torch.from_numpy(owner.astype(np.int64)),
        noisy=torch.from_numpy(noisy), num_images=count,
        source=ShardImages(index, cfg.image_size, count),
        image_ids=index.names[:count], skipped=dict(index.skipped), seen=index.seen,
    )


def load_webdataset(cfg: DataConfig) -> dict[str, ImageTextSplit]:
    out = {}
    for split in SPLITS:
        pattern = getattr(cfg, f"{split}_shards")
        if not pattern:
            raise ShardError(f"data.{split}_shards: required for dataset 'webdataset'")
        out[split] = split_from_index(index_shards(pattern, f"data.{split}_shards"), cfg, split)
    return out
