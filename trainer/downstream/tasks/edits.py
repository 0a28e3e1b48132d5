"""Edits that plant an answer into a random scene: give objects the attributes a question
mentions, or take them away. Positions never move (so relations between centres stay as
sampled); a size change redraws the radius and the edit fails when the objects no longer fit.
The edits only propose scenes: every label is computed afterwards from the edited scene."""

from __future__ import annotations

from dataclasses import replace

from trainer.data.captions import NP
from trainer.data.draws import Draws
from trainer.data.scenes import COLOURS, RADIUS, RADIUS_JITTER, SHAPES, Obj, Scene, fits

ATTRS = ("shape", "colour", "size")
CHOICES = {"shape": len(SHAPES), "colour": len(COLOURS), "size": 2}


def set_attr(rng: Draws, o: Obj, attr: str, value: int) -> Obj:
    if getattr(o, attr) == value:
        return o
    if attr == "size":
        jitter = 1 + RADIUS_JITTER * (2 * rng.random() - 1)
        return replace(o, size=value, r=RADIUS[value] * jitter)
    return replace(o, **{attr: value})


def other_value(rng: Draws, attr: str, value: int) -> int:
    return rng.choice([k for k in range(CHOICES[attr]) if k != value])


def give(rng: Draws, o: Obj, np_: NP) -> Obj:
    """``o`` with every attribute ``np_`` mentions."""
    for attr in ATTRS:
        value = getattr(np_, attr)
        if value is not None:
            o = set_attr(rng, o, attr, value)
    return o


def take(rng: Draws, o: Obj, np_: NP) -> Obj:
    """``o`` changed (one mentioned attribute) so that it does not match ``np_``."""
    if not np_.matches(o):
        return o
    mentioned = [attr for attr in ATTRS if getattr(np_, attr) is not None]
    if not mentioned:
        raise ValueError("take: a noun phrase mentioning nothing matches every object")
    attr = rng.choice(mentioned)
    return set_attr(rng, o, attr, other_value(rng, attr, getattr(o, attr)))


def plant_count(rng: Draws, scene: Scene, np_: NP, k: int) -> Scene | None:
    """Exactly ``k`` objects (chosen at random) match ``np_``; None when there are too few
    objects or the edit does not fit."""
    if k > len(scene):
        return None
    chosen = set(rng.sample(range(len(scene)), k))
    objs = [give(rng, o, np_) if i in chosen else take(rng, o, np_) for i, o in enumerate(scene)]
    return tuple(objs) if fits(objs) else None


def edited(objs: list[Obj]) -> Scene | None:
    return tuple(objs) if fits(objs) else None


def random_np(rng: Draws, p_shape: float = 0.7, p_colour: float = 0.7, p_size: float = 0.3,
              need: tuple[str, ...] = ("shape", "colour"), avoid: str | None = None) -> NP:
    """Random attributes, each mentioned with its probability, at least one of ``need``
    mentioned, ``avoid`` never."""
    while True:
        vals = {attr: (rng.integers(CHOICES[attr]) if rng.random() < p and attr != avoid
                       else None)
                for attr, p in (("shape", p_shape), ("colour", p_colour), ("size", p_size))}
        if any(vals[attr] is not None for attr in need):
            return NP(vals["shape"], vals["colour"], vals["size"])
