"""The random streams of a generated task and the images it renders.

Every stream is a numpy Generator seeded by ``(benchmark_seed, task, split, stream)``, never
by torch or a training seed: a split is a pure function of its own settings, the test split
does not move when ``num_train`` changes, and since each split is generated item by item
(balancing only looks back), its first k items do not depend on how many follow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainer.data.draws import Draws
from trainer.data.render import render
from trainer.data.scenes import Scene, sample_scene

TASK_IDS = {"vqa": 101, "nlvr": 102, "ve": 103, "grounding": 104}
"""Offsets that keep one task's streams apart from another's (and from `shapes`' 0-3)."""
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
SPLITS = tuple(SPLIT_IDS)
ITEM_STREAM, RENDER_STREAM = 0, 1


def stream(seed: int, task: str, split: str, which: int) -> np.random.Generator:
    return np.random.default_rng([seed, TASK_IDS[task], SPLIT_IDS[split], which])


def item_draws(seed: int, task: str, split: str) -> Draws:
    """The stream scenes and texts are drawn from."""
    return Draws(stream(seed, task, split, ITEM_STREAM))


def render_images(scenes: Sequence[Scene], size: int, seed: int, task: str,
                  split: str) -> np.ndarray:
    """[N, 3, S, S] uint8; ``render`` consumes its stream in image order (prefix-stable)."""
    images, _ = render(scenes, size, stream(seed, task, split, RENDER_STREAM))
    return images


def scene_with(rng: Draws, min_objects: int, max_objects: int, at_least: int,
               tries: int = 30) -> Scene | None:
    """A random scene with at least ``at_least`` objects (None when the range cannot)."""
    if at_least > max_objects:
        return None
    low = max(min_objects, at_least)
    for _ in range(tries):
        scene = sample_scene(rng, low, max_objects)
        if len(scene) >= at_least:
            return scene
    return None
