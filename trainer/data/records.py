"""Real datasets as records (image file, split, captions) and their conversion into splits.

Both the Karpathy-split JSON (COCO, Flickr30k) and the image-folder layout are read into the
same records, so capping, file checks and training-caption noise are written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainer.config import DataConfig
from trainer.data.types import FileImages, ImageTextSplit

SPLITS = ("train", "val", "test")
NOISE_STREAM = 3


@dataclass(frozen=True)
class Record:
    path: Path
    split: str
    captions: tuple[str, ...]


def require_root(cfg: DataConfig) -> Path:
    if not cfg.root:
        raise ValueError(
            f"data.root: required for dataset {cfg.dataset!r} (the folder holding the images)"
        )
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise ValueError(f"data.root: {str(root)!r} is not a directory")
    return root


def cap(cfg: DataConfig, split: str) -> int:
    return {"train": cfg.num_train_images, "val": cfg.num_val_images,
            "test": cfg.num_test_images}[split]


def build_splits(
    records: list[Record], cfg: DataConfig, origin: str
) -> dict[str, ImageTextSplit]:
    """Group records by split (file order kept), keep the first ``num_<split>_images`` of
    each, check the files exist, and corrupt ``caption_noise`` of the training captions by
    swapping in another image's caption (flagged in ``noisy``)."""
    out: dict[str, ImageTextSplit] = {}
    for split in SPLITS:
        recs = [r for r in records if r.split == split and r.captions][: cap(cfg, split)]
        if not recs:
            raise ValueError(
                f"data.root: no {split} images with captions in {origin}; every split needs "
                "at least one (set a 'split' per image if the dataset is small)"
            )
        missing = [str(r.path) for r in recs if not r.path.is_file()]
        if missing:
            raise ValueError(
                f"data.root: {len(missing)} {split} image file(s) listed in {origin} are "
                f"missing, e.g. {', '.join(missing[:3])}"
            )
        captions = [c for r in recs for c in r.captions]
        owner = np.repeat(np.arange(len(recs)), [len(r.captions) for r in recs])
        noisy = np.zeros(len(captions), dtype=bool)
        if split == "train" and cfg.caption_noise > 0 and len(recs) > 1:
            captions, noisy = swap_noise(captions, owner, cfg.caption_noise, cfg.benchmark_seed)
        out[split] = ImageTextSplit(
            name=split,
            captions=captions,
            caption_image=torch.from_numpy(owner.astype(np.int64)),
            noisy=torch.from_numpy(noisy),
            num_images=len(recs),
            source=FileImages([r.path for r in recs], cfg.image_size),
            image_ids=[str(r.path) for r in recs],
        )
    return out


def swap_noise(
    captions: list[str], owner: np.ndarray, fraction: float, seed: int
) -> tuple[list[str], np.ndarray]:
    """Replace ``round(fraction * M)`` captions by a caption of a different image."""
    rng = np.random.default_rng([seed, 0, NOISE_STREAM])
    m = len(captions)
    noisy = np.zeros(m, dtype=bool)
    out = list(captions)
    for c in np.sort(rng.choice(m, size=int(round(fraction * m)), replace=False)).tolist():
        for _ in range(100):
            j = int(rng.integers(m))
            if owner[j] != owner[c]:
                out[c] = captions[j]
                noisy[c] = True
                break
    return out, noisy
