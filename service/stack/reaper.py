"""Kills an embedded stack whose owner died without stopping it.

``Stack.start`` starts this first, as its own process in its own session, with the owner's PID
and a state file listing the process groups of the stack's parts and its Ray temp dir (rewritten
whenever a part is restarted). It exits quietly when the state file goes away (an orderly
stop). If the owner dies first (SIGKILL, the OOM killer), it does what ``Stack.stop`` would
have: SIGTERM to each group, a short grace, SIGKILL, then every process still naming the Ray
temp dir, so no MLflow server or Ray head outlives ``ablate serve``.

Run as ``python -m service.stack.reaper --parent PID --parent-started T --state FILE``; of the
service it imports only ``service.stack.processes`` (psutil, httpx), so it starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import psutil

from service.stack.processes import processes_mentioning

POLL_S = 0.25
GRACE_S = 2.0


def owner_alive(pid: int, started: float) -> bool:
    """The owner still runs (same PID *and* start time: a recycled PID is not the owner)."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def reap(state: dict[str, object]) -> None:
    """Stop the groups and the Ray processes the state names: TERM, grace, KILL."""
    groups = [int(g) for g in state.get("groups") or []]  # type: ignore[attr-defined]
    temp_dir = state.get("ray_temp_dir")
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signum)
        if isinstance(temp_dir, str):
            for pid in processes_mentioning(temp_dir):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signum)
        if signum == signal.SIGTERM:
            time.sleep(GRACE_S)
    if isinstance(temp_dir, str) and state.get("own_temp_dir"):
        shutil.rmtree(temp_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--parent-started", type=float, required=True)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # the owner stops us when it is done
    while owner_alive(args.parent, args.parent_started):
        if not args.state.exists():
            return
        time.sleep(POLL_S)
    try:
        state = json.loads(args.state.read_text())
    except (OSError, ValueError):
        return  # stopped in an orderly way just now
    print(f"owner {args.parent} is gone; stopping its stack: {state}", flush=True)
    reap(state)
    args.state.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
