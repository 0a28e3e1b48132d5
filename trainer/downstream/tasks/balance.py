"""Online balancing: each item's label is chosen before its scene, as the least frequent
label of its group so far (ties broken by the item stream). Looking only back keeps a split's
first k items independent of how many follow, and drawing the text before the label keeps the
text independent of the label, so neither the majority label nor a text-only model can do
better than the group's share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

from trainer.data.draws import Draws


class Balancer:
    def __init__(self) -> None:
        self.counts: dict[Hashable, Counter[str]] = {}

    def target(self, rng: Draws, group: Hashable, labels: Sequence[str]) -> str:
        seen = self.counts.setdefault(group, Counter())
        low = min(seen[label] for label in labels)
        return rng.choice([label for label in labels if seen[label] == low])

    def add(self, group: Hashable, label: str) -> None:
        self.counts.setdefault(group, Counter())[label] += 1
