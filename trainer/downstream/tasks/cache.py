"""Generated tasks on disk, content-addressed like the `shapes` benchmark: the file name is a
hash of the task's generating settings and the generator versions, so changed settings never
read a stale file, and it is written atomically (``data.cache.atomic_write``), so concurrent
trials never see half a file. Items travel as one JSON document; no pickles."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np

from trainer.data.cache import atomic_write, content_hash, default_dir
from trainer.data.scenes import Obj, Scene
from trainer.data.shapes import GENERATOR_VERSION
from trainer.downstream.tasks.settings import TaskSettings
from trainer.downstream.tasks.streams import SPLITS
from trainer.downstream.tasks.types import GroundingItem, NLVRItem, TaskSplit, VEItem, VQAItem

TASKS_VERSION = 1
"""Bump when any task's generation changes (the scenes' own version is in the key too)."""
ITEM_TYPES: dict[str, Any] = {"vqa": VQAItem, "nlvr": NLVRItem, "ve": VEItem,
                              "grounding": GroundingItem}
TUPLE_FIELDS = ("images", "proposals")


def cache_path(task: str, settings: TaskSettings) -> Path:
    key = {"task": task, "settings": settings.key(), "version": TASKS_VERSION,
           "scenes_version": GENERATOR_VERSION}
    root = Path(settings.root) if settings.root else default_dir()
    return root / f"task-{task}-{content_hash(key)}.npz"


def _objects(scenes: list[Scene]) -> np.ndarray:
    rows = [(i, o.shape, o.colour, o.size, o.x, o.y, o.r) for i, s in enumerate(scenes) for o in s]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 7)


def _scenes(table: np.ndarray, n: int) -> list[Scene]:
    out: list[list[Obj]] = [[] for _ in range(n)]
    for i, shape, colour, size, x, y, r in table.tolist():
        out[int(i)].append(Obj(int(shape), int(colour), int(size), x, y, r))
    return [tuple(s) for s in out]


def _item(cls: Any, row: dict[str, Any]) -> Any:
    for name in TUPLE_FIELDS:
        if name in row:
            row[name] = tuple(tuple(v) if isinstance(v, list) else v for v in row[name])
    return cls(**row)


def save(path: Path, splits: dict[str, TaskSplit[Any]]) -> None:
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    for name, s in splits.items():
        arrays[f"{name}.images"] = s.images
        arrays[f"{name}.objects"] = _objects(s.scenes)
        meta[name] = {"task": s.task, "answers": list(s.answers), "num_images": len(s.scenes),
                      "items": [asdict(item) for item in s.items]}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    def write(fh: IO[bytes]) -> None:
        np.savez_compressed(fh, allow_pickle=True, **arrays)

    atomic_write(path, write)


def load(path: Path) -> dict[str, TaskSplit[Any]]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        out: dict[str, TaskSplit[Any]] = {}
        for name in SPLITS:
            m = meta[name]
            cls = ITEM_TYPES[m["task"]]
            out[name] = TaskSplit(
                task=m["task"], split=name, images=z[f"{name}.images"],
                scenes=_scenes(z[f"{name}.objects"], m["num_images"]),
                items=tuple(_item(cls, row) for row in m["items"]),
                answers=tuple(m["answers"]),
            )
    return out
