"""The MLflow page the service links to, in a real browser: a real MLflow server (started by the
project's Stack on 127.0.0.1), the experiment's MLflow objects made by ``ParentRuns`` and its
trial runs tagged as the supervisor tags them, the link read from the real API, and headless
Chromium loading it. The page must be MLflow's model-training view (not the GenAI overview)
with every trial named by variant and seed and the primary metric as a column."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.api import create_app
from service.settings import Settings
from service.stack.embedded import Stack, free_port, serve_in_thread
from service.tracking.names import trial_tags
from service.tracking.parent_runs import ParentRuns
from tests.service.test_compare_api import plant_experiment
from tests.service.test_report_page import (  # noqa: F401  (fixture)
    ARTIFACTS,
    CHROMIUM_FLAGS,
    _assert_nontrivial_png,
    chromium,
)
from trainer.tracking import TrialRun

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Iterator[tuple[str, dict[str, float]]]:
    """(the experiment's MLflow link from the API, trial run name -> its mean_recall)."""
    d = tmp_path_factory.mktemp("dashboard")
    settings = Settings(data_dir=d, mlflow_port=free_port(), ray_address="http://127.0.0.1:9")
    with Stack(settings, start_ray=False, start_controller=False):
        app = create_app(settings, reconcile=False)
        store = app.state.store
        exp_id = plant_experiment(store, skip=None, one_seed=None)
        exp = store.get_experiment(exp_id)
        eid, parent = ParentRuns(settings, store).prepare(exp)
        recalls: dict[str, float] = {}
        for variant in exp.variants:
            for t in variant.trials:
                name = f"{variant.name} seed={t.seed}"
                run = TrialRun(settings.mlflow_tracking_uri, trial_key=t.trial_key,
                               experiment_id=eid, run_name=name, parent_run_id=parent,
                               tags=trial_tags(exp_id, t.id, variant.name, t.seed,
                                               variant.levels))
                run.open({"objectives.itc.enabled": variant.levels["ITC"] == "on"})
                run.log_metrics(t.metrics, step=20, force=True)
                run.close(ok=True)
                recalls[name] = t.metrics["mean_recall"]
        with serve_in_thread(app) as base:
            link = httpx.get(f"{base}/experiments/{exp_id}", timeout=30).json()["mlflow_url"]
            yield link, recalls


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile.mkdir(parents=True, exist_ok=True)
    flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--window-size")]
    return subprocess.run(
        [binary, *flags, "--window-size=1600,1000", f"--user-data-dir={profile}",
         "--virtual-time-budget=30000", *args],
        capture_output=True, text=True, timeout=180, cwd=profile,
    )


def test_the_linked_mlflow_page_shows_the_trials_and_the_primary_metric(
        chromium, dashboard, tmp_path):  # noqa: F811
    link, recalls = dashboard
    assert "/runs?viewStateShareKey=" in link
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "mlflow-dashboard.png"
    shot.unlink(missing_ok=True)
    out = _chromium(chromium, tmp_path / "p1", f"--screenshot={shot}",
                    "--run-all-compositor-stages-before-draw", link)
    assert shot.exists(), out.stderr[-2000:]
    _assert_nontrivial_png(shot, 1600, 1000)

    dom = _chromium(chromium, tmp_path / "p2", "--dump-dom", link).stdout
    assert "Training runs" in dom, "not MLflow's model-training view"
    missing = [name for name in recalls if name not in dom]
    assert missing == [], f"trials not on the page: {missing}"
    assert "mean_recall" in dom
    for header in ("variant", "seed", "factor.ITC", "factor.HN"):
        assert f">{header}<" in dom, header
    shown = [name for name, value in recalls.items() if f"{value:.2f}"[:4] in dom]
    assert len(shown) == len(recalls), "the primary metric's values are not in the table"
