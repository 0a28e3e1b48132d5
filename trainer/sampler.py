"""The order in which a trial sees its training pairs: one permutation per epoch."""

from __future__ import annotations

import torch


class PairSampler:
    """Shuffled (image, caption) pairs, one permutation per epoch seeded by (seed, epoch), so
    the data position (epoch, offset) is all a checkpoint needs to resume the same stream."""

    def __init__(self, num_pairs: int, batch_size: int, seed: int) -> None:
        if num_pairs < batch_size:
            raise ValueError(
                f"data.batch_size: {batch_size} exceeds the {num_pairs} training pairs"
            )
        self.num_pairs, self.batch_size, self.seed = num_pairs, batch_size, seed
        self.epoch, self.offset = 0, 0
        self._perm: torch.Tensor | None = None

    @property
    def batches_per_epoch(self) -> int:
        return self.num_pairs // self.batch_size

    def permutation(self) -> torch.Tensor:
        """This epoch's order of the pairs (the fingerprint of the data order reads epoch 0's)."""
        if self._perm is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(self.num_pairs, generator=g)
        return self._perm

    def next(self) -> torch.Tensor:
        if self.offset + self.batch_size > self.num_pairs:  # drop the ragged tail
            self.epoch, self.offset, self._perm = self.epoch + 1, 0, None
        idx = self.permutation()[self.offset : self.offset + self.batch_size]
        self.offset += self.batch_size
        return idx

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load(self, state: dict[str, int]) -> None:
        self.epoch, self.offset, self._perm = state["epoch"], state["offset"], None
