"""Canonical wordings of the generated tasks: one string per meaning (no synonyms), so a
blind model keyed on the exact question string sees every repeat of a question and its
score is a fair ceiling of what the text alone gives."""

from __future__ import annotations

from trainer.data.captions import NP
from trainer.data.scenes import COLOURS, SHAPES, SIZES

REL_WORDS = {"left": "left of", "right": "right of", "above": "above", "below": "below"}


def noun(np_: NP, plural: bool = False) -> str:
    """ "small red circle", "large object", "crosses"."""
    words = []
    if np_.size is not None:
        words.append(SIZES[np_.size])
    if np_.colour is not None:
        words.append(COLOURS[np_.colour])
    head = SHAPES[np_.shape] if np_.shape is not None else "object"
    if plural:
        head += "es" if head.endswith(("s", "x")) else "s"
    words.append(head)
    return " ".join(words)


def a(np_: NP) -> str:
    words = noun(np_)
    return ("an " if words[0] in "aeiou" else "a ") + words


def the(np_: NP) -> str:
    return "the " + noun(np_)


def number(n: int) -> str:
    return ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")[n]
