"""The HTML report page in a real browser: the real app under uvicorn on 127.0.0.1, a planted
experiment in a real SQLite store, headless Chromium loading ``/experiments/<id>/report``.

Three looks: ``--screenshot`` (kept under ``test-artifacts/`` for a human), ``--dump-dom`` (the
page loaded, the table and the inline images are there) and the DevTools protocol over
``--remote-debugging-pipe`` (Chromium actually decoded each image: naturalWidth/Height > 0;
the pipe needs no websocket client). Also the CLI's ``ablate compare`` against the same server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from service.api import create_app
from service.settings import Settings
from service.stack.embedded import serve_in_thread
from tests.service.test_compare_api import MLFLOW_UI, plant_experiment

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1280,2000",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium, installed by ``scripts/test-setup.sh`` when missing; a loud skip if it can't."""
    found = shutil.which("chromium")
    if found is None:
        setup = subprocess.run(["bash", str(ROOT / "scripts" / "test-setup.sh")],
                               capture_output=True, text=True, timeout=900)
        found = shutil.which("chromium")
        if found is None:
            pytest.skip("headless Chromium is not installed and scripts/test-setup.sh could not "
                        f"install it (rc={setup.returncode}): {setup.stderr.strip()[-500:]}")
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(base URL, experiment id): the real app served by uvicorn in a thread."""
    d = tmp_path_factory.mktemp("report")
    settings = Settings(data_dir=d, ray_address="http://127.0.0.1:9",
                        mlflow_tracking_uri="http://127.0.0.1:9", mlflow_ui_url=MLFLOW_UI)
    app = create_app(settings, reconcile=False)
    exp_id = plant_experiment(app.state.store)
    with serve_in_thread(app) as base:
        yield base, exp_id


def _run_chromium(chromium: str, profile: Path, *args: str, timeout: float = 120
                  ) -> subprocess.CompletedProcess[str]:
    profile.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=timeout, cwd=profile,
    )


def test_report_page_renders_in_headless_chromium(chromium, served, tmp_path):
    base, exp_id = served
    url = f"{base}/experiments/{exp_id}/report"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-page.png"
    shot.unlink(missing_ok=True)

    # 1. a screenshot a human can look at
    out = _run_chromium(chromium, tmp_path / "p1", f"--screenshot={shot}",
                        "--run-all-compositor-stages-before-draw",
                        "--virtual-time-budget=5000", url)
    assert shot.exists(), out.stderr[-2000:]
    _assert_nontrivial_png(shot, 1280, 2000)

    # 2. the DOM after load: title, the table with every variant, inline PNGs, MLflow links
    dom = _run_chromium(chromium, tmp_path / "p2", "--dump-dom",
                        "--virtual-time-budget=5000", url).stdout
    assert "<h1>planted-2x2</h1>" in dom, dom[:500]
    assert re.search(r"<table[^>]*>", dom) and "</table>" in dom
    for variant in ("ITC=off,HN=off", "ITC=off,HN=on", "ITC=on,HN=off", "ITC=on,HN=on"):
        assert variant in dom
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', dom)) == 2
    assert f'href="{MLFLOW_UI}/#/experiments/7/runs/' in dom

    # 3. what Chromium decoded (DevTools protocol over a pipe)
    probe = _evaluate(chromium, tmp_path / "p3", url, """JSON.stringify({
        title: document.title,
        tables: document.querySelectorAll('table').length,
        rows: document.querySelectorAll('table.ablation tbody tr').length,
        images: [...document.images].map(i => ({
            alt: i.alt, data: i.src.startsWith('data:image/png;base64,'),
            complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
            shown: i.getBoundingClientRect().width})),
    })""")
    assert probe["title"] == "planted-2x2" and probe["tables"] >= 1 and probe["rows"] == 4
    assert [i["alt"] for i in probe["images"]] == ["bars.png", "curves.png"]
    for img in probe["images"]:
        assert img["data"] and img["complete"], img
        assert img["w"] > 100 and img["h"] > 100 and img["shown"] > 100, img


def _assert_nontrivial_png(path: Path, width: int, height: int) -> None:
    from PIL import Image

    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000, len(data)
    with Image.open(path) as im:
        assert im.size == (width, height)
        colors = im.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colors is None or len(colors) > 50, "the screenshot is (nearly) blank"


def _evaluate(chromium: str, profile: Path, url: str, expression: str,
              timeout: float = 90.0) -> Any:
    """Open ``url`` in headless Chromium and return ``expression``'s value once it loaded."""
    cmd_r, cmd_w = os.pipe()  # we write commands; Chromium reads them on fd 3
    res_r, res_w = os.pipe()  # Chromium writes replies on fd 4
    profile.mkdir(parents=True, exist_ok=True)
    argv = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
            "about:blank"]
    proc = subprocess.Popen(
        ["bash", "-c", f'exec "$@" 3<&{cmd_r} 4>&{res_w}', "chromium", *argv],
        pass_fds=(cmd_r, res_w), stdout=subprocess.DEVNULL,
        stderr=open(profile / "stderr.log", "wb"),  # noqa: SIM115 (closed with the process)
    )
    os.close(cmd_r)
    os.close(res_w)
    cdp = _PipeCDP(cmd_w, res_r, time.monotonic() + timeout)
    try:
        target = cdp.call("Target.createTarget", {"url": url})["targetId"]
        session = cdp.call("Target.attachToTarget",
                           {"targetId": target, "flatten": True})["sessionId"]
        # the new tab starts on about:blank, which is "complete" at once: wait for our page
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        while not cdp.eval(loaded, session):
            time.sleep(0.1)
        return json.loads(cdp.eval(expression, session))
    finally:
        with contextlib.suppress(OSError, AssertionError):  # it may be gone already
            cdp.call("Browser.close", {})
        os.close(cmd_w)
        os.close(res_r)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its handle
            proc.wait()


class _PipeCDP:
    """Chrome DevTools Protocol over ``--remote-debugging-pipe``: NUL-terminated JSON."""

    def __init__(self, write_fd: int, read_fd: int, deadline: float) -> None:
        self.write_fd, self.read_fd, self.deadline = write_fd, read_fd, deadline
        self.next_id = 0
        self.buffer = b""

    def call(self, method: str, params: dict[str, Any], session: str | None = None) -> Any:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply["result"]

    def eval(self, expression: str, session: str) -> Any:
        out = self.call("Runtime.evaluate",
                        {"expression": expression, "returnByValue": True}, session)
        assert "exceptionDetails" not in out, out
        return out["result"].get("value")

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            assert left > 0, "Chromium did not answer in time"
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 16)
                assert chunk, "Chromium closed the DevTools pipe"
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(line)


def test_cli_compare_writes_every_format(served, tmp_path):
    from service.cli import app as cli

    base, exp_id = served
    runner = CliRunner()
    md = runner.invoke(cli, ["compare", exp_id, "--url", base])
    assert md.exit_code == 0, md.output
    assert "ITC=on,HN=on" in md.output and "±" in md.output
    png = tmp_path / "cmp.png"
    r = runner.invoke(cli, ["compare", exp_id, "--format", "png", "--out", str(png),
                            "--url", base])
    assert r.exit_code == 0, r.output
    assert png.read_bytes().startswith(b"\x89PNG")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:  # png without --out: a default file, never bytes on the terminal
        r = runner.invoke(cli, ["compare", exp_id, "-f", "png", "--url", base])
    finally:
        os.chdir(cwd)
    assert r.exit_code == 0 and (tmp_path / f"{exp_id}-compare.png").stat().st_size > 1000
    csv_out = tmp_path / "cmp.csv"
    r = runner.invoke(cli, ["compare", exp_id, "-f", "csv", "--baseline", "ITC=on,HN=off",
                            "-o", str(csv_out), "--url", base])
    assert r.exit_code == 0 and csv_out.read_text().startswith("variant,metric,")
    bad = runner.invoke(cli, ["compare", exp_id, "--baseline", "nope", "--url", base])
    assert bad.exit_code == 1 and "baseline" in bad.output
