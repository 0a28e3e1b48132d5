"""WebDataset tar shards (as img2dataset writes them), indexed once for random access.

A shard is a plain tar whose members are grouped into samples by their name up to the first
dot (WebDataset's rule, ``webdataset.tariterators.base_plus_ext``): ``000123.jpg`` and
``000123.txt`` are one sample. An image is ``.jpg``/``.jpeg``/``.png``/``.webp``; the captions
are the ``.json``'s ``captions`` list, else the ``.txt``, else the ``.json``'s ``caption``.

Why an index and not WebDataset's streaming pipeline: the trainer promises one permutation of
the pairs per epoch seeded by (seed, epoch), resume at the exact sample, and disjoint
rank x worker parts whose union is the epoch. A stream shuffles shards and a buffer, so its
order depends on the buffer and the worker count, and resuming means replaying it. So each
shard is read once, start to end, keeping each sample's captions and its image's (offset,
size) in the tar; images are then read by one ranged read each (a local ``pread``, an S3
ranged GET) wherever the sampler says. WebDataset stays the authority on the format: its
key/extension rule here, its TarWriter in ``trainer.data.convert``, its brace expansion rules
in ``trainer.config.shards``.

What cannot be read is skipped and counted per reason (``Skipped``), never silently dropped.
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from webdataset.tariterators import base_plus_ext

from trainer import storage
from trainer.config.shards import expand

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTS = ("json", "txt")
REASONS = ("broken_member", "empty_caption", "no_caption", "no_image")
"""Why a sample was skipped: a member cut off or unreadable (a truncated or corrupt tar), a
caption with no text, a sample without a caption, a sample without an image."""


class ShardError(ValueError):
    """A shard list that cannot be trained on; the message names the field and the shard."""


@dataclass
class ShardIndex:
    """The readable samples of a shard list: where each image lies and its captions."""

    shards: list[str]
    shard: list[int] = field(default_factory=list)
    offset: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    """``<shard file name>/<key>`` per sample: the same for a local and an S3 copy."""
    captions: list[tuple[str, ...]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def seen(self) -> int:
        """Samples found, readable or not."""
        return len(self.names) + sum(self.skipped.values())


def _caption_of(members: dict[str, bytes]) -> tuple[str, ...] | None:
    """The sample's captions, () when it has a caption member but no text, None when none."""
    if not any(ext in members for ext in CAPTION_EXTS):
        return None
    meta: Any = None
    if "json" in members:
        try:
            meta = json.loads(members["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            meta = None
    if isinstance(meta, dict) and isinstance(meta.get("captions"), list):
        caps = [c for c in meta["captions"] if isinstance(c, str)]
    elif "txt" in members:
        try:
            caps = [members["txt"].decode("utf-8")]
        except UnicodeDecodeError:
            caps = []
    elif isinstance(meta, dict) and isinstance(meta.get("caption"), str):
        caps = [meta["caption"]]
    else:
        caps = []
    return tuple(c.strip() for c in caps if c.strip())


def _scan(index: ShardIndex, shard_id: int, stream: Any, total: int) -> None:
    """Add one shard's samples to ``index``, reading its stream once from start to end."""
    order: list[str] = []
    images: dict[str, tuple[int, int]] = {}
    texts: dict[str, dict[str, bytes]] = {}
    broken: set[str] = set()
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                if not info.isreg():
                    continue
                key, ext = base_plus_ext(info.name)
                if key is None or ext is None or posixpath.basename(key).startswith("__"):
                    continue
                ext = ext.lower()
                if key not in texts:
                    order.append(key)
                    texts[key] = {}
                if info.offset_data + info.size > total:
                    broken.add(key)  # the tar ends inside this member
                elif ext in IMAGE_EXTS and key not in images:
                    images[key] = (info.offset_data, info.size)
                elif ext in CAPTION_EXTS:
                    member = tar.extractfile(info)
                    texts[key][ext] = member.read() if member is not None else b""
    except (tarfile.TarError, EOFError, OSError, ValueError):
        # the rest of the shard is unreadable; counted once unless the cut member already is
        if not order or order[-1] not in broken:
            index.skipped["broken_member"] += 1
    for key in order:
        caps = _caption_of(texts[key])
        if key in broken:
            index.skipped["broken_member"] += 1
        elif key not in images:
            index.skipped["no_image"] += 1
        elif caps is None:
            index.skipped["no_caption"] += 1
        elif not caps:
            index.skipped["empty_caption"] += 1
        else:
            index.shard.append(shard_id)
            index.offset.append(images[key][0])
            index.size.append(images[key][1])
            index.names.append(f"{posixpath.basename(index.shards[shard_id])}/{key}")
            index.captions.append(caps)


def index_shards(pattern: str, field_name: str) -> ShardIndex:
    """Read every shard of ``pattern`` once. A shard that is missing, a bucket that cannot be
    read, or a pattern that names nothing is a ShardError naming ``field_name`` and the shard,
    raised before anything trains."""
    shards = [os.path.expanduser(s) if not storage.is_remote(s) else s
              for s in _expand(pattern, field_name)]
    index = ShardIndex(shards)
    for i, loc in enumerate(shards):
        try:
            total = storage.size(loc)
        except FileNotFoundError as err:
            raise ShardError(f"{field_name}: shard {loc!r} does not exist") from err
        except OSError as err:
            raise ShardError(f"{field_name}: cannot read shard {loc!r}: {err}") from err
        try:
            with storage.open_stream(loc) as stream:
                _scan(index, i, stream, total)
        except OSError as err:
            raise ShardError(f"{field_name}: cannot read shard {loc!r}: {err}") from err
    if not len(index):
        raise ShardError(f"{field_name}: no readable sample in {len(shards)} shard(s) of "
                         f"{pattern!r} (skipped: {dict(index.skipped) or 'none'})")
    return index


def _expand(pattern: str, field_name: str) -> list[str]:
    try:
        return expand(pattern, field_name)
    except ValueError as err:
        raise ShardError(str(err)) from err


class RangeReader:
    """Reads one sample's bytes from its shard; safe to use from DataLoader workers."""

    def __init__(self, shards: list[str]) -> None:
        self.shards = shards

    def read(self, shard: int, offset: int, size: int) -> bytes:
        data = storage.read_range(self.shards[shard], offset, size)
        if len(data) != size:
            raise OSError(f"{self.shards[shard]}: {size} bytes at {offset} expected, "
                          f"{len(data)} read")
        return data
