"""Whether the Ray cluster can ever run a trial: one trial's resources must fit on one node.

A spec asking ``resources.gpus: 1`` on a CPU-only cluster would otherwise sit ``pending``
forever while Tune waits for a node that never comes. The job waits a bounded time for such a
node to join (an autoscaler may add one), then fails those trials with a reason the API shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

RAY_NAMES = {"cpus": "CPU", "gpus": "GPU"}
"""The spec's resource names and Ray's."""


def unfit_reason(request: dict[str, float], nodes: list[dict[str, Any]]) -> str | None:
    """None if some alive node offers every resource ``request`` (spec names) asks for; else
    why not, naming the request and the best any node offers."""
    wanted = {RAY_NAMES[k]: v for k, v in request.items() if v > 0}
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    for offered in alive:
        if all(offered.get(name, 0.0) >= amount for name, amount in wanted.items()):
            return None
    asked = ", ".join(f"{k}={v:g}" for k, v in request.items() if v > 0)
    best = ", ".join(f"{name} {max((o.get(name, 0.0) for o in alive), default=0.0):g}"
                     for name in wanted)
    return (f"unschedulable: each trial asks for {asked} on one node, and no node of the Ray "
            f"cluster offers that ({len(alive)} alive; the most any offers: {best})")


def wait_until_fits(request: dict[str, float], nodes: Callable[[], list[dict[str, Any]]],
                    wait_s: float, poll_s: float = 2.0) -> str | None:
    """None as soon as a node fits; the reason (with the wait) if none has after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        reason = unfit_reason(request, nodes())
        if reason is None:
            return None
        if time.monotonic() >= deadline:
            return f"{reason}; waited {wait_s:g} s for one to join"
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
