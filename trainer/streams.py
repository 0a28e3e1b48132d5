"""Named random streams: one generator per source of randomness, derived from the trial's seed.

A paired comparison is only honest if its arms drew the same random numbers wherever they do the
same thing (common random numbers). With one global generator, an arm that samples ITM hard
negatives shifts every MLM mask drawn after it, so two arms at the same seed would mask
different tokens. Each consumer (MLM masking, patch masking, negatives, adversarial noise) draws
from its own CPU generator seeded by ``(seed, name)``, so what one objective draws never moves
another's stream. The states travel in checkpoints, so a resumed trial continues each stream.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, name: str) -> int:
    """A 63-bit seed for stream ``name`` of trial ``seed`` (a hash: streams are independent)."""
    digest = hashlib.sha256(f"ablate-stream:{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class RandomStreams:
    """Lazily created CPU generators by name; ``state``/``load`` for checkpoints."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}

    def generator(self, name: str) -> torch.Generator:
        gen = self._generators.get(name)
        if gen is None:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, name))
            self._generators[name] = gen
        return gen

    def fingerprint(self, name: str) -> str:
        """What stream ``name`` starts with: a hash of its first draws from a fresh generator
        (equal across arms exactly when they would draw the same numbers)."""
        fresh = torch.Generator().manual_seed(derive_seed(self.seed, name))
        first = torch.randint(0, 2**62, (8,), generator=fresh, dtype=torch.int64)
        return hashlib.sha256(first.numpy().tobytes()).hexdigest()[:16]

    def state(self) -> dict[str, torch.Tensor]:
        return {name: gen.get_state() for name, gen in self._generators.items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name, saved in state.items():
            self.generator(name).set_state(saved)
