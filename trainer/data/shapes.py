"""The built-in `shapes` benchmark: procedurally generated image-caption retrieval.

Everything is drawn from ``numpy`` Generators seeded by ``(benchmark_seed, split, stream)``,
never from torch or the training seed, so each split is a pure function of its own settings:
the test split does not move when ``num_train_images`` or the training seed change, and the
first k images of a split do not depend on how many follow.

What makes it a benchmark rather than a toy (see ``scenes`` and ``captions``):

- a small palette (6 shapes x 8 colours x 2 sizes, 1-3 objects) so many images share most
  attributes and a bag-of-words match is not enough;
- about half of all images come in minimal pairs (colours or shapes swapped between two
  objects, two objects exchanging places, or one attribute changed), and every caption of
  such an image is false for its partner: the hard negatives ITM mining should find;
- ``caption_noise`` of the training pairs get another image's caption or a partly wrong one
  (an attribute, a binding or the relation changed), flagged in ``noisy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from trainer.config import DataConfig
from trainer.data.cache import atomic_write, content_hash, default_dir
from trainer.data.captions import Form, corrupt, evaluate, full_forms, render_text, sample_form
from trainer.data.draws import Draws
from trainer.data.render import render
from trainer.data.scenes import Obj, Scene, sample_scene, sample_variant
from trainer.data.types import ImageTextSplit, TensorImages

GENERATOR_VERSION = 3
"""Bump when generation changes, so old cache files are not reused."""
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
PAIR_PROB = 0.35
"""Chance that a sampled scene gets a minimal-pair partner (about half the images are paired)."""
CAPTION_TRIES = 12
NOISE_SWAP_SHARE = 0.5
"""Among noisy captions: share replaced by another image's caption (the rest partly wrong)."""
OBJ_FIELDS = 7  # image, shape, colour, size, x, y, r


@dataclass
class ShapesSplit:
    """One generated split as plain arrays (what is cached)."""

    images: np.ndarray  # [N, 3, S, S] uint8
    labels: np.ndarray  # [N, 2, S, S] uint8
    captions: list[str]
    caption_image: np.ndarray  # [M] int64
    noisy: np.ndarray  # [M] bool
    group: np.ndarray  # [N] int64
    scenes: list[Scene]


def _streams(seed: int, split: str) -> list[np.random.Generator]:
    return [np.random.default_rng([seed, SPLIT_IDS[split], k]) for k in range(4)]


def sample_scenes(
    rng: Draws, n: int, min_objects: int, max_objects: int
) -> tuple[list[Scene], list[int]]:
    """``n`` scenes and their minimal-pair group ids (partners are adjacent)."""
    scenes: list[Scene] = []
    groups: list[int] = []
    while len(scenes) < n:
        gid = len(scenes)
        base = sample_scene(rng, min_objects, max_objects)
        scenes.append(base)
        groups.append(gid)
        if rng.random() < PAIR_PROB:
            variant = sample_variant(rng, base)
            if variant is not None and len(scenes) < n:
                scenes.append(variant[0])
                groups.append(gid)
    return scenes, groups


def write_captions(
    rng: Draws, scenes: list[Scene], groups: list[int], per_image: int
) -> tuple[list[str], list[Form], list[int]]:
    """``per_image`` true captions per scene, each false for the scene's minimal partners."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    texts: list[str] = []
    forms: list[Form] = []
    owner: list[int] = []
    for i, scene in enumerate(scenes):
        others = [scenes[j] for j in members[groups[i]] if j != i]
        seen: set[str] = set()
        for _ in range(per_image):
            form, text = _distinct_caption(rng, scene, others, seen)
            seen.add(text)
            texts.append(text)
            forms.append(form)
            owner.append(i)
    return texts, forms, owner


def _distinct_caption(
    rng: Draws, scene: Scene, others: list[Scene], seen: set[str]
) -> tuple[Form, str]:
    fallback: tuple[Form, str] | None = None
    for _ in range(CAPTION_TRIES):
        form = sample_form(rng, scene)
        if all(evaluate(form, o) == -1 for o in others):
            text = render_text(rng, form)
            if text not in seen:
                return form, text
            fallback = fallback or (form, text)
    if fallback is not None:
        return fallback
    for form in full_forms(scene):
        if all(evaluate(form, o) == -1 for o in others):
            return form, render_text(rng, form)
    form = sample_form(rng, scene)  # partners indistinguishable in words: keep a true caption
    return form, render_text(rng, form)


def add_noise(
    rng: np.random.Generator,
    scenes: list[Scene],
    texts: list[str],
    forms: list[Form],
    owner: list[int],
    fraction: float,
) -> tuple[list[str], np.ndarray]:
    """Corrupt ``round(fraction * M)`` captions; each corrupted caption is false (-1) for its
    image. Half take another image's caption, half get one fact changed."""
    m = len(texts)
    noisy = np.zeros(m, dtype=bool)
    k = int(round(fraction * m))
    if k == 0:
        return list(texts), noisy
    out = list(texts)
    picked = np.sort(rng.choice(m, size=k, replace=False))
    draws = Draws(rng)
    for c in picked.tolist():
        scene = scenes[owner[c]]
        new: str | None = None
        if draws.random() >= NOISE_SWAP_SHARE:
            bad = corrupt(draws, forms[c], scene)
            if bad is not None:
                new = render_text(draws, bad)
        for _ in range(50 if new is None else 0):
            j = draws.integers(m)
            if owner[j] != owner[c] and evaluate(forms[j], scene) == -1:
                new = texts[j]
                break
        if new is not None:
            out[c] = new
            noisy[c] = True
    return out, noisy


def generate_split(cfg: DataConfig, split: str) -> ShapesSplit:
    """One split, deterministically from ``cfg.benchmark_seed`` and the split's own settings."""
    n = {"train": cfg.num_train_images, "val": cfg.num_val_images,
         "test": cfg.num_test_images}[split]
    scene_rng, caption_rng, render_rng, noise_rng = _streams(cfg.benchmark_seed, split)
    scenes, groups = sample_scenes(Draws(scene_rng), n, cfg.min_objects, cfg.max_objects)
    texts, forms, owner = write_captions(
        Draws(caption_rng), scenes, groups, cfg.captions_per_image
    )
    noise = cfg.caption_noise if split == "train" else 0.0
    texts, noisy = add_noise(noise_rng, scenes, texts, forms, owner, noise)
    images, labels = render(scenes, cfg.image_size, render_rng)
    return ShapesSplit(images, labels, texts, np.asarray(owner, dtype=np.int64), noisy,
                       np.asarray(groups, dtype=np.int64), scenes)


# ---- caching ------------------------------------------------------------------------------

GENERATING_FIELDS = ("image_size", "num_train_images", "num_val_images", "num_test_images",
                     "captions_per_image", "min_objects", "max_objects", "caption_noise",
                     "benchmark_seed")


def cache_path(cfg: DataConfig) -> Path:
    key = {f: getattr(cfg, f) for f in GENERATING_FIELDS} | {"version": GENERATOR_VERSION}
    root = Path(cfg.root) if cfg.root else default_dir()
    return root / f"shapes-{content_hash(key)}.npz"


def _objects(scenes: list[Scene]) -> np.ndarray:
    rows = [(i, o.shape, o.colour, o.size, o.x, o.y, o.r)
            for i, s in enumerate(scenes) for o in s]
    return np.asarray(rows, dtype=np.float64).reshape(-1, OBJ_FIELDS)


def _scenes(table: np.ndarray, n: int) -> list[Scene]:
    out: list[list[Obj]] = [[] for _ in range(n)]
    for i, shape, colour, size, x, y, r in table.tolist():
        out[int(i)].append(Obj(int(shape), int(colour), int(size), x, y, r))
    return [tuple(s) for s in out]


def save(path: Path, splits: dict[str, ShapesSplit]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name, s in splits.items():
        arrays |= {
            f"{name}.images": s.images, f"{name}.labels": s.labels,
            f"{name}.captions": np.asarray(s.captions, dtype=np.str_),
            f"{name}.caption_image": s.caption_image, f"{name}.noisy": s.noisy,
            f"{name}.group": s.group, f"{name}.objects": _objects(s.scenes),
        }

    def write(fh: IO[bytes]) -> None:
        # Compressed: mostly flat background, so 64 px x 20k images shrink ~40x (500 -> 12 MB).
        # allow_pickle=True is numpy's default; given by name, the type checker knows that
        # **arrays fills only the arrays
        np.savez_compressed(fh, allow_pickle=True, **arrays)

    atomic_write(path, write)


def load(path: Path) -> dict[str, ShapesSplit]:
    with np.load(path, allow_pickle=False) as z:
        out = {}
        for name in SPLIT_IDS:
            images = z[f"{name}.images"]
            out[name] = ShapesSplit(
                images, z[f"{name}.labels"], z[f"{name}.captions"].tolist(),
                z[f"{name}.caption_image"], z[f"{name}.noisy"], z[f"{name}.group"],
                _scenes(z[f"{name}.objects"], len(images)),
            )
    return out


def generate(cfg: DataConfig) -> dict[str, ShapesSplit]:
    return {name: generate_split(cfg, name) for name in SPLIT_IDS}


def load_shapes(cfg: DataConfig, use_cache: bool = True) -> dict[str, ImageTextSplit]:
    """The three splits, from the cache file when present (else generated and cached)."""
    path = cache_path(cfg)
    raw: dict[str, ShapesSplit] | None = None
    if use_cache and path.exists():
        try:
            raw = load(path)
        except Exception:  # unreadable, truncated or from another writer: regenerate
            raw = None
    if raw is None:
        raw = generate(cfg)
        if use_cache:
            save(path, raw)
    return {name: to_split(name, s) for name, s in raw.items()}


def to_split(name: str, s: ShapesSplit) -> ImageTextSplit:
    images = torch.from_numpy(np.ascontiguousarray(s.images))
    return ImageTextSplit(
        name=name,
        captions=list(s.captions),
        caption_image=torch.from_numpy(np.asarray(s.caption_image, dtype=np.int64)),
        noisy=torch.from_numpy(np.asarray(s.noisy, dtype=bool)),
        num_images=int(images.shape[0]),
        source=TensorImages(images),
        label_maps=torch.from_numpy(np.ascontiguousarray(s.labels)),
        scenes=s.scenes,
        image_group=torch.from_numpy(np.asarray(s.group, dtype=np.int64)),
        image_ids=[f"{name}/{i}" for i in range(int(images.shape[0]))],
    )
