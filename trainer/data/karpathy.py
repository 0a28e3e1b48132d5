"""COCO and Flickr30k in the Karpathy-split JSON layout (``dataset_coco.json`` and
``dataset_flickr30k.json``), the standard image-text retrieval splits (5k / 1k test images).

Layout::

    {"images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg",
                 "split": "train" | "restval" | "val" | "test",
                 "sentences": [{"raw": "A man riding a bike."}, ...]}, ...]}

``restval`` counts as train (as in ALBEF and UNITER). Flickr30k entries have no ``filepath``.
Images are ``root/filepath/filename``; every caption of an image is kept, whatever
``captions_per_image`` says (that setting only shapes the generated benchmark).
"""

from __future__ import annotations

import json
from pathlib import Path

from trainer.config import DataConfig
from trainer.data.records import Record, build_splits, require_root
from trainer.data.types import ImageTextSplit

DEFAULT_ANNOTATIONS = {"coco": "dataset_coco.json", "flickr30k": "dataset_flickr30k.json"}
SPLIT_OF = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def read_records(root: Path, annotations: Path) -> list[Record]:
    try:
        data = json.loads(annotations.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"data.annotations: cannot read {str(annotations)!r}: {err}") from err
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise ValueError(
            f"data.annotations: {str(annotations)!r} has no 'images' list (expected the "
            "Karpathy split JSON)"
        )
    records = []
    for k, entry in enumerate(images):
        try:
            split = SPLIT_OF.get(entry["split"])
            path = root / entry.get("filepath", "") / entry["filename"]
            captions = tuple(s["raw"].strip() for s in entry["sentences"] if s["raw"].strip())
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(
                f"data.annotations: entry {k} of {str(annotations)!r} lacks {err} "
                "(needs filename, split and sentences[].raw)"
            ) from err
        if split is not None:
            records.append(Record(path, split, captions))
    return records


def load_karpathy(cfg: DataConfig) -> dict[str, ImageTextSplit]:
    root = require_root(cfg)
    annotations = root / (cfg.annotations or DEFAULT_ANNOTATIONS[cfg.dataset])
    if not annotations.is_file():
        raise ValueError(
            f"data.annotations: {str(annotations)!r} not found (the Karpathy split JSON, "
            "relative to data.root)"
        )
    return build_splits(read_records(root, annotations), cfg, str(annotations))
