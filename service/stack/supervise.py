"""Keeps ``ablate serve``'s stack up: a crashed MLflow server or controller is started again
with exponential backoff while the rest runs on.

Why these two and not Ray: the controller keeps no state of its own (the store and Ray do; its
reconciler picks up where it was), and MLflow's state is its database, so either can simply be
started again. Trials ride out an MLflow restart on MLflow's own client retries (minutes, with
backoff) and continue their run by its trial key. A Ray head that dies takes its jobs with it
and a new head would need a new token and temp dir: that stops the stack, and the reconciler of
the next ``ablate serve`` resubmits what was lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from service.stack.embedded import Stack

RESTARTABLE = ("mlflow", "controller")


@dataclass(frozen=True)
class Backoff:
    """Delay before restart n: ``first * 2**n`` up to ``cap``; back to ``first`` once the
    part has stayed up ``healthy_after_s``."""

    first_s: float = 1.0
    cap_s: float = 30.0
    healthy_after_s: float = 60.0


class Supervisor:
    """One :meth:`check` per tick of ``ablate serve``'s loop; never blocks on a start."""

    def __init__(self, stack: Stack, say: Callable[[str], None],
                 backoff: Backoff | None = None) -> None:
        self.stack = stack
        self.say = say
        self.backoff = backoff or Backoff()
        self.delay = {name: self.backoff.first_s for name in RESTARTABLE}
        self.due: dict[str, float] = {}
        self.restarts = {name: 0 for name in RESTARTABLE}

    def check(self) -> str | None:
        """Restart what is due; returns why the whole stack must stop, or None."""
        now = time.monotonic()
        for name, child in list(self.stack.children.items()):
            if child.alive():
                if now - child.started_at >= self.backoff.healthy_after_s:
                    self.delay[name] = self.backoff.first_s
                continue
            if name not in RESTARTABLE:
                return (f"{name} exited (code {child.proc.returncode}); see {child.log_path}")
            if name not in self.due:
                wait = self.delay[name]
                self.due[name] = now + wait
                self.delay[name] = min(self.backoff.cap_s, wait * 2)
                self.say(f"{name} exited (code {child.proc.returncode}); restarting in "
                         f"{wait:g} s (see {child.log_path})")
        for name, due in list(self.due.items()):
            if now < due:
                continue
            del self.due[name]
            try:
                child = self.stack.respawn(name)
            except OSError as err:  # could not even exec: try again after the next delay
                self.say(f"{name} did not start: {err}")
                continue
            self.restarts[name] += 1
            self.say(f"{name} restarted (pid {child.proc.pid}, restart {self.restarts[name]})")
        return None
