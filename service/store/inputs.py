"""What callers hand the store to insert: an experiment's variants and their trials, as the
spec's expansion planned them (plain dataclasses; the store assigns ids and states)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["NewTrial", "NewVariant"]


@dataclass
class NewTrial:
    """A trial to insert (one seed of a variant); the store assigns its id and state."""

    seed: int
    trial_key: str


@dataclass
class NewVariant:
    """A variant to insert with its trials, as the spec's expansion planned it."""

    name: str
    levels: dict[str, str]
    overrides: dict[str, Any]
    config: dict[str, Any]
    config_hash: str
    trials: list[NewTrial]
