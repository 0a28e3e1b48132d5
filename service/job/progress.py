"""A trial's progress in the store, written at most every ``PROGRESS_EVERY_S`` seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from service.store import Store

PROGRESS_EVERY_S = 0.5


def throttled(fn: Callable[[Any], None], every_s: float) -> Callable[[Any], None]:
    """Call ``fn`` at most every ``every_s`` seconds, but always for the last step."""
    last = [0.0]

    def call(p: Any) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s or p.step >= p.total_steps:
            last[0] = now
            fn(p)

    return call


def store_progress(store: Store, trial_id: int) -> Callable[[Any], None]:
    """The trainer's progress callback for ``trial_id``: its step, total and metrics."""
    return throttled(
        lambda p: store.update_progress(trial_id, p.step, p.total_steps, p.metrics),
        PROGRESS_EVERY_S,
    )
