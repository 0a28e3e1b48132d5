"""Real WebDataset shards for the shard tests, written by ``trainer.data.convert`` from a small
`shapes` benchmark, and the config that trains on them."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from trainer.config import TrainConfig, build_config
from trainer.data.convert import convert

SHAPES = {"data.num_train_images": 40, "data.num_val_images": 10, "data.num_test_images": 10,
          "data.captions_per_image": 2, "data.image_size": 32}
TRAIN = {"data.batch_size": 16, "schedule.steps": 16, "schedule.warmup_steps": 2,
         "runtime.checkpoint_every": 8, "runtime.log_every": 4, "eval.rerank_k": 4,
         "runtime.threads": 1, "objectives.itc.queue_size": 32, "init.warm_start": False}
"""40 images x 2 captions = 80 pairs: 5 batches an epoch, so step 8 is mid-epoch."""


def make_shards(tmp: Path, per_shard: int = 16) -> dict[str, str]:
    """The three shard patterns (local) of a 40/10/10-image `shapes` benchmark."""
    cfg = build_config("tiny", dotted={**SHAPES, "data.root": str(tmp / "shapes")})
    return convert(cfg.data, tmp / "shards", per_shard=per_shard)


def shard_config(tmp: Path, patterns: dict[str, str], **dotted: object) -> TrainConfig:
    return build_config("tiny", dotted={
        **SHAPES, **TRAIN, "data.dataset": "webdataset", "data.root": str(tmp / "cache"),
        **{f"data.{s}_shards": p for s, p in patterns.items()}, **dotted,
    })


def members(shard: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(shard) as tar:
        return tar.getmembers()


def replace_member(shard: Path, name: str, data: bytes) -> None:
    """Rewrite ``shard`` with member ``name``'s bytes replaced (a valid tar, bad content)."""
    with tarfile.open(shard) as tar:
        items = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(shard, "w") as out:
        for info, payload in items:
            payload = data if info.name == name else payload
            info.size = len(payload)
            out.addfile(info, io.BytesIO(payload))


def truncate_inside(shard: Path, name: str) -> None:
    """Cut ``shard`` in the middle of member ``name``'s data (a tar copied half-way)."""
    info = next(m for m in members(shard) if m.name == name)
    with open(shard, "r+b") as fh:
        fh.truncate(info.offset_data + info.size // 2)
