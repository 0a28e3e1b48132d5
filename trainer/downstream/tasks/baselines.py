"""What a model scores without looking at the image: the floor every fine-tuned head must
clear. ``majority``: the most frequent training label, always. ``blind``: the most frequent
training label of each exact text, falling back to its group's (a VQA question family) for a
text unseen in training; its test accuracy is the ceiling of what the text alone gives."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Baseline:
    name: str
    accuracy: float
    """On the test labels."""


def class_balance(labels: Sequence[Hashable]) -> dict[str, float]:
    """Each label's share, most frequent first."""
    counts = Counter(labels)
    return {str(k): v / len(labels) for k, v in counts.most_common()}


def _top(labels: Sequence[Hashable]) -> Hashable:
    # most_common breaks ties by first occurrence: deterministic for a given split
    return Counter(labels).most_common(1)[0][0]


def majority(train: Sequence[Hashable], test: Sequence[Hashable]) -> Baseline:
    if not train or not test:
        raise ValueError("majority: empty split")
    top = _top(train)
    return Baseline(f"majority ({top})", sum(t == top for t in test) / len(test))


def blind(train_texts: Sequence[str], train_groups: Sequence[Hashable],
          train: Sequence[Hashable], test_texts: Sequence[str],
          test_groups: Sequence[Hashable], test: Sequence[Hashable]) -> Baseline:
    if not train or not test:
        raise ValueError("blind: empty split")
    by_text: dict[str, list[Hashable]] = {}
    by_group: dict[Hashable, list[Hashable]] = {}
    for text, group, label in zip(train_texts, train_groups, train, strict=True):
        by_text.setdefault(text, []).append(label)
        by_group.setdefault(group, []).append(label)
    text_top = {t: _top(v) for t, v in by_text.items()}
    group_top = {g: _top(v) for g, v in by_group.items()}
    overall = _top(train)
    hits = 0
    for text, group, label in zip(test_texts, test_groups, test, strict=True):
        guess = text_top.get(text, group_top.get(group, overall))
        hits += guess == label
    return Baseline("blind (exact text, else group)", hits / len(test))
