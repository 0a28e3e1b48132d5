"""Scenes of the `shapes` benchmark: what is in an image, before it is drawn or described.

A scene is a few objects, each a (shape, colour, size) at a position, in unit coordinates
(x right, y down, both in [0, 1]) so the same scene renders at any resolution. Geometry facts
(relations between objects, an object's region of the image) are three-valued: +1 clearly true,
-1 clearly false, 0 too close to call. Captions only state +1 facts, and a caption counts as
wrong for an image only when it evaluates to -1 there, so "true" and "false" never hinge on a
pixel or two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from trainer.data.draws import Draws

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "ring")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "white")
SIZES: tuple[str, ...] = ("small", "large")
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (230, 35, 35),
    "green": (40, 200, 60),
    "blue": (45, 95, 245),
    "yellow": (240, 225, 40),
    "purple": (165, 60, 225),
    "orange": (250, 140, 20),
    "cyan": (40, 215, 225),
    "white": (235, 235, 235),
}
RADIUS: tuple[float, float] = (0.13, 0.20)
"""Nominal radius (unit coordinates) of a small and a large object; jittered by +-RADIUS_JITTER."""
RADIUS_JITTER = 0.08
GAP = 0.02
"""Extra space kept between objects' bounding circles."""
EXTENT = 1.13
"""Bounding-circle radius of the widest shape (the square's corner) in units of its radius."""

RELATION_MARGIN = 0.10
"""A relation is clear when the centres differ by more than this along its axis."""
RELATIONS: tuple[str, ...] = ("left", "right", "above", "below")
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}


@dataclass(frozen=True)
class Obj:
    shape: int
    colour: int
    size: int
    x: float
    y: float
    r: float

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.shape, self.colour, self.size)


Scene = tuple[Obj, ...]


def _tri(value: float, margin: float) -> int:
    return 1 if value > margin else (-1 if value < -margin else 0)


def relation(a: Obj, b: Obj, rel: str) -> int:
    """Is ``a`` <rel> ``b`` ("a is left of b")? +1 / 0 / -1."""
    dx, dy = b.x - a.x, b.y - a.y
    value = {"left": dx, "right": -dx, "above": dy, "below": -dy}[rel]
    return _tri(value, RELATION_MARGIN)


def region(obj: Obj, horizontal: str | None, vertical: str | None) -> int:
    """Is the object in that part of the image ("left"/"center"/"right", "top"/"middle"/
    "bottom"; None = unconstrained)? The thirds are soft: 0.40/0.50 and 0.12/0.20 bands."""

    def side(u: float, where: str) -> int:
        if where in ("left", "top"):
            return 1 if u < 0.40 else (-1 if u > 0.50 else 0)
        if where in ("right", "bottom"):
            return 1 if u > 0.60 else (-1 if u < 0.50 else 0)
        d = abs(u - 0.5)  # center / middle
        return 1 if d < 0.12 else (-1 if d > 0.20 else 0)

    h = side(obj.x, horizontal) if horizontal else 1
    v = side(obj.y, vertical) if vertical else 1
    return min(h, v)


def fits(objs: list[Obj] | Scene) -> bool:
    """Inside the image and no two bounding circles closer than GAP."""
    for i, a in enumerate(objs):
        e = a.r * EXTENT
        if not (e <= a.x <= 1 - e and e <= a.y <= 1 - e):
            return False
        for b in objs[:i]:
            if math.hypot(a.x - b.x, a.y - b.y) < (a.r + b.r) * EXTENT + GAP:
                return False
    return True


def _radius(rng: Draws, size: int) -> float:
    return RADIUS[size] * (1.0 + RADIUS_JITTER * (2 * rng.random() - 1))


def _place(rng: Draws, placed: list[Obj], obj: Obj, tries: int = 40) -> Obj | None:
    e = obj.r * EXTENT
    for _ in range(tries):
        x, y = rng.uniform(e, 1 - e), rng.uniform(e, 1 - e)
        if all(math.hypot(x - b.x, y - b.y) >= (obj.r + b.r) * EXTENT + GAP for b in placed):
            return replace(obj, x=x, y=y)
    return None


def sample_scene(rng: Draws, min_objects: int, max_objects: int) -> Scene:
    """Objects with independent attributes from the small palette, at non-overlapping places.

    Rejection sampling on positions; when a crowded scene will not fit, objects are shrunk to
    small before giving up, so large ``max_objects`` degrade gracefully instead of looping.
    """
    n = rng.integers(min_objects, max_objects + 1)
    for attempt in range(60):
        placed: list[Obj] = []
        force_small = attempt >= 20
        for _ in range(n):
            size = 0 if force_small else rng.integers(2)
            obj = Obj(rng.integers(len(SHAPES)), rng.integers(len(COLOURS)), size,
                      0.0, 0.0, _radius(rng, size))
            got = _place(rng, placed, obj)
            if got is None:
                break
            placed.append(got)
        if len(placed) == n:
            return tuple(placed)
    raise ValueError(
        f"data.max_objects: cannot place {n} non-overlapping objects in one image; "
        "lower data.max_objects"
    )


VARIANTS = ("colour_swap", "shape_swap", "position_swap", "attribute")


def sample_variant(rng: Draws, scene: Scene) -> tuple[Scene, str] | None:
    """A minimal pair partner of ``scene``: the same objects with one binding or fact changed.

    - colour_swap / shape_swap: two objects exchange a colour (or shape), so the bag of
      attributes is identical and only their binding differs ("red circle, blue square" vs
      "blue circle, red square");
    - position_swap: two distinct objects exchange places, which flips their relation;
    - attribute: one object's colour, shape or size changes.
    Returns None when no variant fits (the caller then keeps the scene unpaired).
    """
    kinds = list(VARIANTS) if len(scene) >= 2 else ["attribute"]
    weights = [0.35, 0.2, 0.25, 0.2] if len(scene) >= 2 else [1.0]
    while kinds:
        kind = rng.weighted(kinds, weights)
        weights.pop(kinds.index(kind))
        kinds.remove(kind)
        out = _variant(rng, scene, kind)
        if out is not None and out != scene:
            return out, kind
    return None


def _variant(rng: Draws, scene: Scene, kind: str) -> Scene | None:
    objs = list(scene)
    if kind == "attribute":
        i = rng.integers(len(objs))
        field = rng.weighted(["colour", "shape", "size"], [0.45, 0.4, 0.15])
        o = objs[i]
        if field == "size":
            new = replace(o, size=1 - o.size, r=_radius(rng, 1 - o.size))
        else:
            options = COLOURS if field == "colour" else SHAPES
            cur = getattr(o, field)
            val = rng.choice([k for k in range(len(options)) if k != cur])
            new = replace(o, **{field: val})
        objs[i] = new
        return tuple(objs) if fits(objs) else None
    pairs = [(i, j) for i in range(len(objs)) for j in range(i + 1, len(objs))]
    for idx in rng.permutation(len(pairs)):
        i, j = pairs[idx]
        a, b = objs[i], objs[j]
        if kind == "colour_swap" and a.colour != b.colour:
            objs[i], objs[j] = replace(a, colour=b.colour), replace(b, colour=a.colour)
        elif kind == "shape_swap" and a.shape != b.shape:
            objs[i], objs[j] = replace(a, shape=b.shape), replace(b, shape=a.shape)
        elif kind == "position_swap" and a.key != b.key:
            objs[i], objs[j] = replace(a, x=b.x, y=b.y), replace(b, x=a.x, y=a.y)
        else:
            continue
        if fits(objs):
            return tuple(objs)
        objs = list(scene)
    return None
