"""``GET /experiments/{id}/compare`` and ``/report`` on the real app and a real SQLite store.

Trials are planted through ``service.store`` exactly as the supervisor writes them (running,
then finished with metrics and a learning curve), so nothing needs Ray or MLflow; the app is
driven in-process with FastAPI's TestClient.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service import report, views
from service.analysis import AnalysisError
from service.api import create_app, new_variants
from service.settings import Settings
from service.specs import expand, parse_spec, spec_to_json
from service.store import Store
from service.views import CompareQuery, QueryError, analyze_experiment, learning_curve

SPEC: dict[str, Any] = {
    "name": "planted-2x2",
    "design": "factorial",
    "base": {"preset": "tiny", "set": {"schedule.steps": 20, "eval.split": "val",
                                       "eval.every_steps": 5}},
    "factors": {
        "ITC": {"path": "objectives.itc.enabled", "levels": [False, True]},
        "HN": {"path": "objectives.itm.hard_negatives", "levels": [False, True]},
    },
    "seeds": 3,
    "metrics": {"primary": "mean_recall", "reported": ["mean_recall", "t2i_r1", "i2t_r1"]},
}
ONE_SEED = "ITC=off,HN=on"  # only seed 0 done, seeds 1-2 still pending
UNFINISHED = ("ITC=on,HN=on", 2)  # running
MLFLOW_UI = "http://127.0.0.1:5000"


def plant_experiment(store: Store, spec: dict[str, Any] = SPEC, *,
                     skip: tuple[str, int] | None = UNFINISHED,
                     one_seed: str | None = ONE_SEED,
                     prints: Any = None) -> str:
    """Create the experiment and finish its trials through the store, like the supervisor."""
    parsed = parse_spec(json.dumps(spec).encode())
    expansion = expand(parsed)
    exp = store.create_experiment(
        name=parsed.name, description="", spec=spec_to_json(parsed), design=parsed.design,
        baseline=expansion.baseline, primary_metric=parsed.metrics.primary,
        variants=new_variants(expansion),
    )
    rng = np.random.default_rng(0)
    for v in exp.variants:
        gain = 6.0 * (v.levels.get("ITC") == "on") + 1.0 * (v.levels.get("HN") == "on")
        for t in v.trials:
            if (v.name, t.seed) == skip or (v.name == one_seed and t.seed > 0):
                if (v.name, t.seed) == skip:
                    store.mark_running(t.id, worker_pid=1)
                continue
            final = 40 + gain + 0.8 * t.seed + rng.normal(0, 0.3)
            metrics = {"mean_recall": final, "t2i_r1": final - 10, "i2t_r1": final - 12,
                       "final_loss": 3.0 - gain / 10}
            history = {
                "val_mean_recall": [(s, final * s / 20 + rng.normal(0, 0.2)) for s in (5, 10, 15)],
                "mean_recall": [(20, final)],
                "loss": [(s, 5.0 - s / 10) for s in range(2, 21, 2)],
            }
            store.mark_running(t.id, worker_pid=1)
            store.mark_finished(t.id, metrics=metrics, mlflow_run_id=f"run{t.id}",
                                mlflow_experiment_id="7", steps=20, history=history,
                                fingerprints=prints(v.name, t.seed) if prints else None)
    return exp.id


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    settings = Settings(data_dir=d, ray_address="http://127.0.0.1:9",
                        mlflow_tracking_uri="http://127.0.0.1:9", mlflow_ui_url=MLFLOW_UI)
    app = create_app(settings, reconcile=False)
    with TestClient(app) as c:
        c.store = app.state.store
        c.exp_id = plant_experiment(app.state.store)
        yield c


def test_formats_and_media_types(client):
    for fmt, media in report.MEDIA_TYPES.items():
        r = client.get(f"/experiments/{client.exp_id}/compare", params={"format": fmt})
        assert r.status_code == 200, (fmt, r.text[:300])
        assert r.headers["content-type"] == media, fmt
        assert len(r.content) > 100, fmt
    assert set(report.FORMATS) == {"json", "markdown", "csv", "latex", "html", "png"}


def test_json_is_the_seed_aware_analysis(client):
    a = client.get(f"/experiments/{client.exp_id}/compare").json()
    assert a["baseline"] == "ITC=off,HN=off" and a["design"] == "factorial"
    assert a["metrics"] == ["mean_recall", "t2i_r1", "i2t_r1"]
    assert [v["name"] for v in a["variants"]] == ["ITC=off,HN=off", "ITC=off,HN=on",
                                                  "ITC=on,HN=off", "ITC=on,HN=on"]
    by = {v["name"]: v for v in a["variants"]}
    assert by["ITC=on,HN=off"]["factor_levels"] == {"ITC": "on", "HN": "off"}
    # unfinished seeds are shown, not used
    assert by["ITC=on,HN=on"]["n_done"] == 2 and by["ITC=on,HN=on"]["n_unfinished"] == 1
    # one seed: a mean but no interval
    cell = by[ONE_SEED]["cells"]["mean_recall"]
    assert cell["n"] == 1 and cell["mean"] is not None and cell["ci"] is None
    # three paired seeds: a t interval and a significant ITC gain vs the baseline
    full = by["ITC=on,HN=off"]
    assert full["cells"]["mean_recall"]["ci"]["method"] == "t"
    cmp = full["vs_baseline"]["mean_recall"]
    assert cmp["test"] == "paired_t" and cmp["verdict"] == "better" and 5 < cmp["delta"] < 7
    # links to the trials' MLflow runs
    links = [t["mlflow_url"] for t in full["trials"]]
    assert all(u.startswith(f"{MLFLOW_UI}/#/experiments/7/runs/run") for u in links)
    # learning curves from the stored history (val points + the final val evaluation)
    curve = next(c for c in a["curves"] if c["variant"] == "ITC=on,HN=off")
    assert curve["metric"] == "mean_recall" and curve["steps"] == [5, 10, 15, 20]
    assert curve["n"] == [3, 3, 3, 3]
    assert a["factor_effects"], "a 2x2 with replicates has factor effects"


def test_options_change_the_analysis(client):
    url = f"/experiments/{client.exp_id}/compare"
    a = client.get(url, params={"baseline": "ITC=on,HN=off", "alpha": 0.1,
                                "correction": "bonferroni", "ci": "bootstrap"}).json()
    assert a["baseline"] == "ITC=on,HN=off" and a["alpha"] == 0.1
    assert a["correction"] == "bonferroni" and a["ci_method"] == "bootstrap"
    by = {v["name"]: v for v in a["variants"]}
    assert by["ITC=on,HN=off"]["is_baseline"] and not by["ITC=on,HN=off"]["vs_baseline"]
    assert by["ITC=off,HN=off"]["vs_baseline"]["mean_recall"]["verdict"] == "worse"


def test_markdown_csv_latex_are_tables(client):
    url = f"/experiments/{client.exp_id}/compare"
    md = client.get(url, params={"format": "markdown"}).text
    assert "| ITC=on,HN=on" in md and "±" in md
    rows = list(csv.DictReader(io.StringIO(client.get(url, params={"format": "csv"}).text)))
    assert len(rows) == 4 * 3 and rows[0]["variant"] == "ITC=off,HN=off"
    assert {r["n_unfinished"] for r in rows if r["variant"] == "ITC=on,HN=on"} == {"1"}
    tex = client.get(url, params={"format": "latex"}).text
    assert r"\toprule" in tex and r"\bottomrule" in tex


def test_png_is_an_image(client):
    r = client.get(f"/experiments/{client.exp_id}/compare", params={"format": "png"})
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n") and len(r.content) > 10_000


def test_report_page_is_self_contained_html(client):
    r = client.get(f"/experiments/{client.exp_id}/report")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "<table" in page and page.count('src="data:image/png;base64,') == 2
    assert f'href="{MLFLOW_UI}/#/experiments/7/runs/run' in page
    assert "<script" not in page and "http-equiv" not in page


def test_cached_trials_count_as_done(client):
    # finishes the seeds the first experiment left undone (the others are cached already)
    again = plant_experiment(client.store, skip=None, one_seed=None)
    second = new_variants(expand(parse_spec(json.dumps(SPEC).encode())))
    exp = client.store.create_experiment(
        name="again", description="", spec=client.store.get_experiment(again).spec,
        design="factorial", baseline="ITC=off,HN=off", primary_metric="mean_recall",
        variants=second,
    )
    assert exp.counts()["cached"] == 12
    a = client.get(f"/experiments/{exp.id}/compare").json()
    assert all(v["n_done"] == 3 and v["n_unfinished"] == 0 for v in a["variants"])
    # the learning curves came along with the cache
    assert len(a["curves"]) == 4 and all(n == 3 for c in a["curves"] for n in c["n"])


def test_an_experiment_with_nothing_done_still_compares(client):
    spec = {**SPEC, "name": "fresh", "seeds": [11, 12]}
    parsed = parse_spec(json.dumps(spec).encode())
    expansion = expand(parsed)
    exp = client.store.create_experiment(
        name="fresh", description="", spec=spec_to_json(parsed), design="factorial",
        baseline=expansion.baseline, primary_metric="mean_recall",
        variants=new_variants(expansion),
    )
    for fmt in ("json", "markdown", "html"):
        r = client.get(f"/experiments/{exp.id}/compare", params={"format": fmt})
        assert r.status_code == 200, r.text
    a = client.get(f"/experiments/{exp.id}/compare").json()
    assert all(v["n_done"] == 0 and v["n_unfinished"] == 2 for v in a["variants"])


BAD_QUERIES = {
    "unknown format": ({"format": "pdf"}, "format"),
    "unknown baseline": ({"baseline": "nope"}, "baseline"),
    "alpha above 1": ({"alpha": 1.5}, "alpha"),
    "alpha zero": ({"alpha": 0}, "alpha"),
    "alpha not a number": ({"alpha": "x"}, "alpha"),
    "unknown correction": ({"correction": "magic"}, "correction"),
    "unknown ci": ({"ci": "z"}, "ci"),
}


@pytest.mark.parametrize(("route", "case"), [
    (route, case) for route in ("compare", "report") for case in BAD_QUERIES
    if not (route == "report" and BAD_QUERIES[case][1] == "format")  # the page has no format
])
def test_bad_query_is_422_naming_the_field(client, route, case):
    params, field = BAD_QUERIES[case]
    r = client.get(f"/experiments/{client.exp_id}/{route}", params=params)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail[0]["field"] == field and detail[0]["reason"]


def test_an_analysis_refusal_reaches_the_client_by_its_field(client, monkeypatch):
    # the route passes correction through unchecked: the analysis refuses it, naming it
    r = client.get(f"/experiments/{client.exp_id}/compare", params={"correction": "magic"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{
        "field": "correction",
        "reason": "'magic' is not a statsmodels multipletests method "
                  "(e.g. 'holm', 'bonferroni', 'fdr_bh') or 'none'",
    }]
    # options the route already checks are mapped the same way when they reach the analysis
    exp = client.store.get_experiment(client.exp_id, with_history=True)
    with pytest.raises(QueryError) as caught:
        analyze_experiment(exp, CompareQuery(alpha=1.5))
    assert (caught.value.field, caught.value.reason) == ("alpha", "must be in (0, 1), got 1.5")
    with pytest.raises(QueryError) as caught:
        analyze_experiment(exp, CompareQuery(ci="jackknife"))
    assert (caught.value.field, caught.value.reason) == (
        "ci", "must be 't' or 'bootstrap', got 'jackknife'")
    # a refusal of something the client did not choose is a bug: it is not turned into a 4xx
    def refuse(*args, **kwargs):
        raise AnalysisError("view.variants", "duplicate names")
    monkeypatch.setattr(views.an, "analyze", refuse)
    with pytest.raises(AnalysisError) as raised:
        analyze_experiment(exp, CompareQuery())
    assert not isinstance(raised.value, QueryError)


def test_unknown_experiment_is_404(client):
    for route in ("compare", "report"):
        r = client.get(f"/experiments/exp-nope/{route}")
        assert r.status_code == 404 and r.json()["detail"][0]["field"] == "id"


def test_status_polls_do_not_load_histories(client):
    plain = client.store.get_experiment(client.exp_id)
    assert all(t.history is None for t in plain.trials)
    full = client.store.get_experiment(client.exp_id, with_history=True)
    assert any(t.history for t in full.trials)


def test_views_build_what_the_analysis_needs(client):
    exp = client.store.get_experiment(client.exp_id, with_history=True)
    a = analyze_experiment(exp, CompareQuery(), MLFLOW_UI)
    assert a.experiment == "planted-2x2" and a.primary_metric == "mean_recall"
    # a test-split final number is never joined to val-split points
    hist = {"val_mean_recall": [(5, 1.0)], "mean_recall": [(20, 2.0)]}
    assert learning_curve(hist, "mean_recall", "test") == [(20, 2.0)]
    assert learning_curve(hist, "mean_recall", "val") == [(5, 1.0), (20, 2.0)]
    assert learning_curve(None, "mean_recall", "val") == []


def test_history_column_migrates_an_existing_database(tmp_path):
    from alembic import command
    from alembic.config import Config

    from service.store import MIGRATIONS, make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    engine = make_engine(url)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.commit()
    engine.dispose()
    store = Store(url)  # upgrades to head
    try:
        exp_id = plant_experiment(store)
        assert any(t.history for t in store.get_experiment(exp_id, with_history=True).trials)
    finally:
        store.close()


def test_comparison_artifacts_on_the_parent_run_once(client, tmp_path):
    """The supervisor's end-of-job step against a real MLflow (SQLite store, no server)."""
    from mlflow.tracking import MlflowClient

    from service.job.supervisor import curves_to_store
    from service.tracking.names import COMPARE_TAG
    from service.tracking.parent_runs import ParentRuns

    settings = Settings(data_dir=tmp_path, mlflow_tracking_uri=f"sqlite:///{tmp_path}/ml.db",
                        mlflow_ui_url=MLFLOW_UI)
    ml = MlflowClient(settings.mlflow_tracking_uri)
    eid = ml.create_experiment("planted", artifact_location=(tmp_path / "art").as_uri())
    parent = ml.create_run(eid).info.run_id
    client.store.set_mlflow(client.exp_id, eid, parent)
    parent_runs = ParentRuns(settings, client.store)
    assert parent_runs.log_comparison(client.exp_id) is True
    names = {f.path for f in ml.list_artifacts(parent, "compare")}
    assert names == {f"compare/{n}" for n in
                     ("analysis.json", "table.md", "table.csv", "bars.png", "curves.png")}
    tag = ml.get_run(parent).data.tags[COMPARE_TAG]
    # a restarted job logs nothing again (same table), and nothing is duplicated
    assert parent_runs.log_comparison(client.exp_id) is False
    assert {f.path for f in ml.list_artifacts(parent, "compare")} == names
    assert ml.get_run(parent).data.tags[COMPARE_TAG] == tag
    (tmp_path / "dl").mkdir()
    md = Path(ml.download_artifacts(parent, "compare/table.md", str(tmp_path / "dl")))
    assert "| ITC=on,HN=on" in md.read_text(encoding="utf-8")
    # what the supervisor keeps of a trial's history: the spec's metrics, thinned
    long = {"mean_recall": [(i, float(i)) for i in range(1000)], "loss": [(1, 1.0)],
            "val_t2i_r1": [(5, 1.0)]}
    kept = curves_to_store(long, ["mean_recall", "t2i_r1"], max_points=50)
    assert set(kept) == {"mean_recall", "val_t2i_r1"} and len(kept["mean_recall"]) == 50
    assert kept["mean_recall"][0] == (0, 0.0) and kept["mean_recall"][-1] == (999, 999.0)


def test_fingerprints_stored_with_the_trials_decide_the_pairing(tmp_path):
    """Trials finished through the store with fingerprints, as the supervisor stores them: the
    arm whose data order differs at every seed is compared by Welch, and /compare says why."""
    settings = Settings(data_dir=tmp_path, ray_address="http://127.0.0.1:9",
                        mlflow_tracking_uri="http://127.0.0.1:9")
    app = create_app(settings, reconcile=False)
    with TestClient(app) as c:
        store = app.state.store

        def prints(variant: str, seed: int) -> dict[str, str]:
            order = f"other-{seed}" if variant == "ITC=on,HN=off" else f"o{seed}"
            return {"data_order": order, "init.model.text": f"w{seed}"}

        exp_id = plant_experiment(store, skip=None, one_seed=None, prints=prints)
        a = c.get(f"/experiments/{exp_id}/compare").json()
        by = {v["name"]: v["vs_baseline"].get("mean_recall") for v in a["variants"]}
        assert by["ITC=off,HN=on"]["test"] == "paired_t"
        assert by["ITC=off,HN=on"]["pairing"] == "verified"
        broken = by["ITC=on,HN=off"]
        assert broken["test"] == "welch_t"
        assert broken["pairing"] == "broken: data_order differs at seeds 0, 1, 2"
        md = c.get(f"/experiments/{exp_id}/compare", params={"format": "markdown"}).text
        assert "ITC=on,HN=off vs ITC=off,HN=off: pairing broken: data_order differs" in md
