"""``bench/load.py --quick`` runs: the real controller as a subprocess, the raw HTTP generator,
the table and the goals, on the smallest setting (2 variants x 2 seeds, 1 client, 0.3 s)."""

from __future__ import annotations

import json

from bench import load


def test_quick_load_bench_runs(tmp_path, capsys):
    out = tmp_path / "cells.json"
    load.main(["--quick", "--json", str(out)])
    cells = json.loads(out.read_text())
    assert {c["name"] for c in cells} == {"status", "compare json"}
    assert all(c["requests"] > 0 and c["errors"] == 0 and c["clients"] == 1 for c in cells)
    printed = capsys.readouterr().out
    assert "shares these cores" in printed and "goal status >= 500 req/s" in printed
