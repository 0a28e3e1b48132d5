"""What makes two trials the same, importable without the training loop: the controller keys
every trial of a POST with it, and importing ``trainer.trial`` (transformers, MLflow, the
models) there would cost seconds on its first request."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from trainer.config import TrainConfig


@cache
def code_fingerprint() -> str:
    """Hash of the trainer's source: a code change gives every trial a new key."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def trial_key(config: TrainConfig, seed: int) -> str:
    """hash(resolved config + seed + trainer code fingerprint): what makes two trials the same."""
    payload = f"{config.canonical_json()}|seed={seed}|code={code_fingerprint()}"
    return hashlib.sha256(payload.encode()).hexdigest()[:20]
