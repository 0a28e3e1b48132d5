"""A folder of images with a captions file: the simplest way to bring your own data.

``data.root`` holds the images (subfolders allowed) and one captions file, by default
``captions.json`` or else ``captions.jsonl`` (``data.annotations`` names another, relative to
root):

``captions.json``, a mapping from image path (relative to root) to its captions::

    {"cat.jpg": ["a cat on a mat", "a sleeping cat"],
     "dogs/1.png": {"captions": ["two dogs"], "split": "test"}}

``captions.jsonl``, one object per line; lines naming the same image add captions::

    {"image": "cat.jpg", "captions": ["a cat on a mat"], "split": "train"}
    {"image": "cat.jpg", "caption": "a sleeping cat"}

``split`` ("train", "val" or "test") is optional. Without it an image's split follows from a
hash of its path (90% train, 5% val, 5% test), so it never changes when images are added or
the file is reordered. Within a split, images are ordered by path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from trainer.config import DataConfig
from trainer.data.records import SPLITS, Record, build_splits, require_root
from trainer.data.types import ImageTextSplit

CANDIDATES = ("captions.json", "captions.jsonl")
HASH_SPLIT = ((90, "train"), (95, "val"), (100, "test"))


def hashed_split(name: str) -> str:
    bucket = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 100
    return next(split for upper, split in HASH_SPLIT if bucket < upper)


def _captions(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValueError(f"data.annotations: captions of {where} must be a list of strings")
    return [c.strip() for c in value if c.strip()]


def _entries(path: Path) -> list[tuple[str, list[str], str | None]]:
    """(image name, captions, explicit split) from a .json or .jsonl captions file."""
    text = path.read_text(encoding="utf-8")
    out: list[tuple[str, list[str], str | None]] = []
    try:
        if path.suffix == ".jsonl":
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                obj = json.loads(line)
                name = obj.get("image") if isinstance(obj, dict) else None
                if not isinstance(name, str):
                    raise ValueError(f"data.annotations: line {n} of {path} has no 'image'")
                caps = obj.get("captions", obj.get("caption", []))
                out.append((name, _captions(caps, name), obj.get("split")))
        else:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"data.annotations: {path} must map image names to captions")
            for name, value in data.items():
                if isinstance(value, dict):
                    out.append((name, _captions(value.get("captions", []), name),
                                value.get("split")))
                else:
                    out.append((name, _captions(value, name), None))
    except json.JSONDecodeError as err:
        raise ValueError(f"data.annotations: {path} is not valid JSON: {err}") from err
    return out


def read_records(root: Path, path: Path) -> list[Record]:
    captions: dict[str, list[str]] = {}
    splits: dict[str, str] = {}
    for name, caps, split in _entries(path):
        if split is not None and split not in SPLITS:
            raise ValueError(
                f"data.annotations: split {split!r} of {name!r} must be one of {SPLITS}"
            )
        captions.setdefault(name, []).extend(caps)
        if split is not None:
            splits[name] = split
    return [Record(root / name, splits.get(name) or hashed_split(name), tuple(captions[name]))
            for name in sorted(captions)]


def load_imagefolder(cfg: DataConfig) -> dict[str, ImageTextSplit]:
    root = require_root(cfg)
    names = [cfg.annotations] if cfg.annotations else list(CANDIDATES)
    path = next((root / n for n in names if (root / n).is_file()), None)
    if path is None:
        raise ValueError(
            f"data.annotations: no {' or '.join(names)} in {str(root)!r} (see "
            "trainer.data.imagefolder for the format)"
        )
    return build_splits(read_records(root, path), cfg, str(path))
