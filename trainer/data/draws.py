"""Cheap scalar random draws on top of a numpy Generator.

Scene and caption sampling make tens of thousands of tiny draws; each numpy call costs
microseconds of overhead, so uniforms are taken from the Generator in blocks and handed out
one by one. The sequence consumed does not depend on how many draws follow, so the first k
images of a split stay the same when the split grows, and everything still comes from the
split's own seeded numpy stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")
BLOCK = 4096


class Draws:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._buf: list[float] = []
        self._pos = 0

    def random(self) -> float:
        """Uniform in [0, 1)."""
        if self._pos == len(self._buf):
            self._buf = self.rng.random(BLOCK).tolist()
            self._pos = 0
        u = self._buf[self._pos]
        self._pos += 1
        return u

    def integers(self, low: int, high: int | None = None) -> int:
        """Uniform integer in [low, high) (or [0, low) with one argument)."""
        if high is None:
            low, high = 0, low
        return low + min(int(self.random() * (high - low)), high - low - 1)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def choice(self, options: Sequence[T]) -> T:
        return options[self.integers(len(options))]

    def weighted(self, options: Sequence[T], weights: Sequence[float]) -> T:
        u = self.random() * sum(weights)
        for option, w in zip(options, weights, strict=True):
            if u < w:
                return option
            u -= w
        return options[-1]

    def permutation(self, n: int) -> list[int]:
        out = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.integers(i + 1)
            out[i], out[j] = out[j], out[i]
        return out

    def sample(self, options: Sequence[T], k: int) -> list[T]:
        """``k`` distinct elements in random order."""
        return [options[i] for i in self.permutation(len(options))[:k]]
