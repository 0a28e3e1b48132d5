"""``bench/overhead.py`` finishes, as ``make bench`` runs it: one tiny trial each of the four ways
on the stack it starts. It hung once on a driver that looked for the head beyond loopback and
failed once on a data path outside the service's data dir; both only showed in ``make bench``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_overhead_bench_finishes_with_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "overhead.py"), "--trials", "1", "--steps", "3"],
        capture_output=True, text=True, timeout=400, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for way in ("  loop ", "  tune ", "  script ", "  service "):
        assert way in out, out[-2000:]
    assert "service overhead above Tune's fit" in out
    assert "Failed to connect to GCS" not in done.stderr
