"""The generated grounding task (RefCOCO-style): a referring expression that picks out exactly
one object of a scene, and every object as a proposal box.

An expression names the target by attributes, by a clear relation to a uniquely described
anchor, or by its region of the image; it is used only when it is clearly true (+1) of the
target and clearly false (-1) of every other object, so no expression hinges on a close call.
With ``distractor_prob`` another object is first given the target's shape and colour (or its
shape only, for attribute expressions), so the relation or region is needed, as in RefCOCO's
"the man on the left"."""

from __future__ import annotations

import itertools

from trainer.data.captions import NP, REGION_WORDS, Region
from trainer.data.draws import Draws
from trainer.data.scenes import EXTENT, RELATIONS, Obj, Scene, region, relation
from trainer.downstream.tasks.balance import Balancer
from trainer.downstream.tasks.edits import edited, set_attr
from trainer.downstream.tasks.phrases import REL_WORDS, the
from trainer.downstream.tasks.settings import GroundingSettings
from trainer.downstream.tasks.streams import item_draws, render_images, scene_with
from trainer.downstream.tasks.types import Box, GroundingItem, TaskSplit

TASK = "grounding"
KINDS = ("attribute", "relation", "region")
TRIES = 200


def box(o: Obj, size: int) -> Box:
    """Pixel box [x1, y1, x2, y2] of the object's bounding circle (radius ``EXTENT * r``,
    which every shape fits in; the square's corners reach it)."""
    e = o.r * EXTENT
    return ((o.x - e) * size, (o.y - e) * size, (o.x + e) * size, (o.y + e) * size)


def descriptions(o: Obj) -> list[NP]:
    """Every noun phrase true of ``o`` that names its shape or colour."""
    out = []
    for shape, colour, size in itertools.product((o.shape, None), (o.colour, None),
                                                 (o.size, None)):
        if shape is not None or colour is not None:
            out.append(NP(shape, colour, size))
    return out


def _sole(scene: Scene, np_: NP, i: int) -> bool:
    return [j for j, o in enumerate(scene) if np_.matches(o)] == [i]


def express(rng: Draws, scene: Scene, t: int, kind: str) -> str | None:
    """A referring expression of ``kind`` for object ``t``, or None when the scene has none."""
    target = scene[t]
    if kind == "attribute":
        unique = [np_ for np_ in descriptions(target) if _sole(scene, np_, t)]
        return the(rng.choice(unique)) if unique else None
    # the noun alone should not suffice: use the fullest description short of size
    np_ = NP(target.shape, target.colour)
    others = [j for j, o in enumerate(scene) if j != t and np_.matches(o)]
    if kind == "region":
        regions: list[Region] = [r for r in REGION_WORDS if region(target, *r) == 1
                                 and all(region(scene[j], *r) == -1 for j in others)]
        if not regions:
            return None
        reg = rng.choice(regions)
        return f"{the(np_)} {REGION_WORDS[reg][0]}"
    options = []
    for b, anchor in enumerate(scene):
        if b == t:
            continue
        for rel in RELATIONS:
            if relation(target, anchor, rel) == 1 and all(
                    relation(scene[j], anchor, rel) == -1 for j in others if j != b):
                options += [(rel, a) for a in descriptions(anchor) if _sole(scene, a, b)]
    if not options:
        return None
    rel, anchor_np = rng.choice(options)
    return f"{the(np_)} {REL_WORDS[rel]} {the(anchor_np)}"


def _distract(rng: Draws, scene: Scene, t: int, kind: str) -> Scene | None:
    d = rng.choice([j for j in range(len(scene)) if j != t])
    objs = list(scene)
    objs[d] = set_attr(rng, objs[d], "shape", scene[t].shape)
    if kind != "attribute":
        objs[d] = set_attr(rng, objs[d], "colour", scene[t].colour)
    return edited(objs)


def generate_split(s: GroundingSettings, split: str) -> TaskSplit[GroundingItem]:
    rng = item_draws(s.benchmark_seed, TASK, split)
    balancer = Balancer()
    scenes: list[Scene] = []
    items: list[GroundingItem] = []
    while len(items) < s.split_size(split):
        kind = balancer.target(rng, "kind", KINDS)
        for _ in range(TRIES):
            scene = scene_with(rng, s.min_objects, s.max_objects, 2)
            if scene is None:
                raise ValueError("grounding: needs scenes of at least 2 objects")
            t = rng.integers(len(scene))
            if rng.random() < s.distractor_prob:
                scene = _distract(rng, scene, t, kind)
            text = None if scene is None else express(rng, scene, t, kind)
            if scene is not None and text is not None:
                break
        else:
            raise RuntimeError(f"grounding: no {kind} expression in {TRIES} scenes")
        balancer.add("kind", kind)
        items.append(GroundingItem(image=len(scenes), text=text,
                                   proposals=tuple(box(o, s.image_size) for o in scene),
                                   target=t, kind=kind))
        scenes.append(scene)
    images = render_images(scenes, s.image_size, s.benchmark_seed, TASK, split)
    return TaskSplit(TASK, split, images, scenes, tuple(items))
