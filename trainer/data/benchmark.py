"""``load_benchmark``: the one entry point from a ``DataConfig`` to splits and a tokenizer."""

from __future__ import annotations

from pathlib import Path

from trainer.config import DataConfig
from trainer.data.cache import default_dir, writable_dir
from trainer.data.imagefolder import load_imagefolder
from trainer.data.karpathy import load_karpathy
from trainer.data.shapes import load_shapes
from trainer.data.sharded import load_webdataset
from trainer.data.tokenizer import load_tokenizer, train_tokenizer
from trainer.data.types import Benchmark, ImageTextSplit


def load_splits(cfg: DataConfig) -> dict[str, ImageTextSplit]:
    if cfg.dataset == "shapes":
        return load_shapes(cfg)
    if cfg.dataset in ("coco", "flickr30k"):
        return load_karpathy(cfg)
    if cfg.dataset == "imagefolder":
        return load_imagefolder(cfg)
    if cfg.dataset == "webdataset":
        return load_webdataset(cfg)
    raise ValueError(f"data.dataset: unknown dataset {cfg.dataset!r}")


def cache_dir(cfg: DataConfig) -> Path:
    """Beside the data: ``root`` (shapes: ``root`` or ``.ablate/data``); a dataset folder
    that cannot be written falls back to ``.ablate/data``."""
    if cfg.dataset == "shapes":
        return Path(cfg.root) if cfg.root else default_dir()
    return writable_dir(Path(cfg.root) if cfg.root else None)


def load_benchmark(cfg: DataConfig) -> Benchmark:
    """Splits and tokenizer for ``cfg``; generated / trained once, then read from the cache."""
    splits = load_splits(cfg)
    if cfg.tokenizer_path:
        tokenizer = load_tokenizer(cfg.tokenizer_path)
    else:
        tokenizer = train_tokenizer(splits["train"].captions, cfg.vocab_size, cache_dir(cfg))
    return Benchmark(
        train=splits["train"], val=splits["val"], test=splits["test"],
        tokenizer=tokenizer, max_text_len=cfg.max_text_len,
    )
