"""What a generated task hands the fine-tuning code: images as uint8 arrays and typed items
that mirror ``downstream.formats``' records (an image index in place of a path), so a
generated task and a real dataset look alike to a head."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from trainer.data.scenes import Scene

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class VQAItem:
    question_id: int
    image: int
    question: str
    answer: str
    """The exact answer (one of the split's ``answers``)."""
    family: str
    template: str

    @property
    def answers(self) -> tuple[str, ...]:
        """As ``VQARecord.answers``: one annotator, so ``vqa_accuracy`` is exact match."""
        return (self.answer,)


@dataclass(frozen=True)
class NLVRItem:
    images: tuple[int, int]
    """(left, right) image indices."""
    sentence: str
    label: bool
    statement_id: int
    """Shared by every pair of one statement: the key of ``nlvr2_consistency``."""
    family: str


@dataclass(frozen=True)
class VEItem:
    image: int
    sentence: str
    label: str
    """One of ``metrics.VE_LABELS``."""
    kind: str
    """How the hypothesis was made (``entail``, ``corrupt``, ``variant``, ``absent``,
    ``close_call``, ``unshown``): for per-kind breakdowns; readable from the text only in part."""


@dataclass(frozen=True)
class GroundingItem:
    image: int
    text: str
    proposals: tuple[Box, ...]
    """Every object of the image, pixel boxes [x1, y1, x2, y2] at the rendered size."""
    target: int
    """Index into ``proposals`` of the referred object."""
    kind: str
    """``attribute``, ``relation`` or ``region``: what the expression uses beyond the noun."""

    @property
    def box(self) -> Box:
        """The target as ``GroundingRecord.box``: COCO [x, y, w, h], what ``metrics`` takes."""
        return xywh(self.proposals[self.target])


def xywh(box: Box) -> Box:
    x1, y1, x2, y2 = box
    return (x1, y1, x2 - x1, y2 - y1)


ItemT = TypeVar("ItemT", VQAItem, NLVRItem, VEItem, GroundingItem)


@dataclass
class TaskSplit(Generic[ItemT]):
    """One split of one task."""

    task: str
    split: str
    images: np.ndarray
    """[N, 3, S, S] uint8."""
    scenes: list[Scene]
    """The scene graph of each image (what the labels were computed from)."""
    items: tuple[ItemT, ...]
    answers: tuple[str, ...] = field(default=())
    """VQA's closed answer list (an answer's position is its class index); () elsewhere."""

    def __len__(self) -> int:
        return len(self.items)
