"""Small, fast settings shared by the task tests (16 px renders in milliseconds)."""

from __future__ import annotations

from trainer.data.scenes import COLOURS, SHAPES, Obj


def obj(shape: str, colour: str, x: float, y: float, size: int = 0) -> Obj:
    return Obj(SHAPES.index(shape), COLOURS.index(colour), size, x, y, 0.13 if size == 0 else 0.2)
