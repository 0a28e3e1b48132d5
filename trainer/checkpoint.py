"""Complete, atomic checkpoints: a run killed at any moment resumes to the same numbers.

The file holds weights, EMA copies and queues (all in the module's state dict), optimizer and
scheduler state, every RNG state and the data position. It lives in a folder or under an
``s3://`` prefix (``trainer.storage``: any node can resume any trial) and is written atomically
there (locally: temporary file, fsync, rename), so a crash mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from trainer import storage
from trainer.storage import Location

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(payload: dict[str, Any], directory: Location) -> Location:
    target = storage.join(directory, CHECKPOINT_NAME)
    storage.write_atomic(target, lambda f: torch.save(payload, f))
    return target


def load_latest(directory: Location) -> dict[str, Any] | None:
    path = storage.join(directory, CHECKPOINT_NAME)
    if not storage.exists(path):
        return None
    with storage.open_read(path) as f:
        return torch.load(f, map_location="cpu", weights_only=False)
