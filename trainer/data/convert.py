"""Any dataset the trainer reads (Karpathy JSON, image folder, `shapes`) written as WebDataset
shards the way img2dataset writes them, so a user can convert and the tests have real shards.

One sample per image: ``<key>.jpg`` (or ``.png``; a source file already in that format is
copied byte for byte, never re-encoded), ``<key>.txt`` with its first caption (img2dataset's
layout) and ``<key>.json`` with ``{"caption": first, "captions": all}`` (what the reader
prefers, so an image keeps every caption). Written with WebDataset's TarWriter, mtime 0, so the
same data gives the same bytes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from webdataset import TarWriter

from trainer.config import DataConfig
from trainer.data.records import SPLITS
from trainer.data.types import FileImages, ImageTextSplit

FORMATS = {"jpg": "JPEG", "png": "PNG"}
SUFFIXES = {"jpg": (".jpg", ".jpeg"), "png": (".png",)}


def image_bytes(split: ImageTextSplit, i: int, fmt: str, quality: int = 90) -> bytes:
    """Image ``i`` of ``split`` encoded as ``fmt`` (the source file itself when it is one)."""
    source = split.source
    if isinstance(source, FileImages) and source.paths[i].suffix.lower() in SUFFIXES[fmt]:
        return source.paths[i].read_bytes()
    buf = io.BytesIO()
    options = {"quality": quality} if fmt == "jpg" else {}
    source.pil(i).save(buf, format=FORMATS[fmt], **options)
    return buf.getvalue()


def shard_pattern(folder: Path, count: int) -> str:
    """The brace pattern naming ``count`` shards ``00000.tar`` ... in ``folder``."""
    if count == 1:
        return str(folder / "00000.tar")
    return str(folder / f"{{00000..{count - 1:05d}}}.tar")


def write_split(split: ImageTextSplit, folder: Path, per_shard: int, fmt: str = "jpg",
                quality: int = 90) -> str:
    """``split`` as shards of ``per_shard`` images in ``folder``; returns their pattern."""
    if fmt not in FORMATS:
        raise ValueError(f"format: one of {sorted(FORMATS)}, not {fmt!r}")
    folder.mkdir(parents=True, exist_ok=True)
    per_image = split.image_captions()
    count = max(1, -(-split.num_images // per_shard))
    for s in range(count):
        with TarWriter(str(folder / f"{s:05d}.tar"), mtime=0.0) as tar:
            for i in range(s * per_shard, min((s + 1) * per_shard, split.num_images)):
                caps = [split.captions[c] for c in per_image[i]]
                tar.write({
                    "__key__": f"{i:09d}",
                    fmt: image_bytes(split, i, fmt, quality),
                    "txt": caps[0] if caps else "",
                    "json": json.dumps({"caption": caps[0] if caps else "", "captions": caps}),
                })
    return shard_pattern(folder, count)


def convert(cfg: DataConfig, out: Path, per_shard: int = 1000, fmt: str = "jpg",
            quality: int = 90) -> dict[str, str]:
    """Every split of ``cfg``'s dataset as shards under ``out/<split>/``: the three patterns
    (``data.<split>_shards``). Captions are written clean (``caption_noise`` is a training
    setting, applied when the shards are read)."""
    from trainer.data.benchmark import load_splits

    splits = load_splits(cfg.model_copy(update={"caption_noise": 0.0}))
    return {name: write_split(splits[name], out / name, per_shard, fmt, quality)
            for name in SPLITS}
