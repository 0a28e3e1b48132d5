"""Bad specs get 422 naming the field, and leave the store unchanged; dry runs run nothing.

The real app on a real SQLite store, driven in-process: none of these requests reach Ray or
MLflow (a rejected spec or a dry run never submits), so nothing needs to be up.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.settings import Settings

SMALL = {"schedule.steps": 10}
GOOD = {
    "name": "ok", "base": {"preset": "tiny", "set": SMALL}, "seeds": 2,
    "factors": {"ITC": {"path": "objectives.itc.enabled", "levels": [False, True]}},
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    settings = Settings(data_dir=d, max_variants=8, max_trials=20,
                        ray_address="http://127.0.0.1:9", mlflow_tracking_uri="http://127.0.0.1:9")
    app = create_app(settings, reconcile=False)
    with TestClient(app) as c:
        c.store = app.state.store
        yield c


def with_(**changes):
    return {**GOOD, **changes}


BAD = {
    "unknown field": (with_(colour="red"), "colour"),
    "wrong type": (with_(seeds="three"), "seeds"),
    "empty factors": (with_(factors={}), "factors"),
    "past the limit": (with_(factors={
        f"F{i}": {"path": "objectives.itc.enabled", "levels": [False, True]} for i in range(4)
    }), "factors"),
    "unknown baseline": (with_(baseline="nope"), "baseline"),
    "invalid variant config": (with_(factors={
        "Q": {"path": "objectives.itc.queue_size", "levels": [16, 0]}
    }), "variants[Q=0].objectives.itc.queue_size"),
    "unknown config path": (with_(factors={
        "A": {"path": "objectives.nope.enabled", "levels": [False, True]}
    }), "variants[A=off].objectives.nope"),
    "a primary metric no trial reports": (
        with_(metrics={"primary": "no_such_metric"}), "metrics.primary"),
    "a reported metric no trial reports": (
        with_(metrics={"primary": "mean_recall", "reported": ["t2i_r1", "accuracy"]}),
        "metrics.reported"),
}


def test_metrics_the_trainer_reports_are_accepted(client):
    body = with_(metrics={"primary": "i2t_r10",
                          "reported": ["mean_recall", "final_loss", "final_loss_itc"]})
    assert client.post("/experiments?dry_run=true", json=body).status_code == 200


@pytest.mark.parametrize("case", list(BAD))
def test_bad_spec_is_422_naming_the_field_and_store_unchanged(client, case):
    body, field = BAD[case]
    before = client.store.counts()
    r = client.post("/experiments", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail[0]["reason"]
    assert detail[0]["field"] == field
    assert client.store.counts() == before


def test_limit_message_says_how_many(client):
    r = client.post("/experiments", json=BAD["past the limit"][0])
    assert "16 variants" in r.json()["detail"][0]["reason"]


def test_not_yaml_not_a_mapping(client):
    r = client.post("/experiments", content=b"- just\n- a list\n",
                    headers={"content-type": "application/yaml"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "<body>"
    r = client.post("/experiments", content=b"{unclosed",
                    headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_dry_run_expands_and_runs_nothing(client):
    before = client.store.counts()
    r = client.post("/experiments?dry_run=true", json=with_(design="leave_one_out"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["dry_run"] is True and out["trials"] == 4
    assert [v["name"] for v in out["variants"]] == ["full", "w/o ITC"]
    assert out["baseline"] == "full"
    assert set(out["variants"][0]["trial_keys"]) == {"0", "1"}
    assert client.store.counts() == before


def test_unknown_ids_are_404(client):
    for path in ("/experiments/exp-nope", "/experiments/exp-nope/compare"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["detail"][0]["field"] == "id"
    assert client.post("/experiments/exp-nope/cancel").status_code == 404
    assert client.post("/experiments/exp-nope/retry").status_code == 404


def test_bad_query_is_422_json(client):
    r = client.get("/experiments/exp-nope/compare?format=pdf")
    assert r.status_code in (404, 422)
    assert "detail" in r.json()


def test_openapi_documents_the_spec(client):
    schema = client.get("/openapi.json").json()
    assert "AblationSpec" in schema["components"]["schemas"]
    assert "/experiments/{exp_id}/compare" in schema["paths"]
    assert client.get("/docs").status_code == 200
    assert client.get("/healthz").json()["status"] == "ok"


def test_auth_token_required_when_set(tmp_path):
    settings = Settings(data_dir=tmp_path, auth_token="s3cret")
    with TestClient(create_app(settings, reconcile=False)) as c:
        assert c.get("/experiments").status_code == 401
        ok = c.get("/experiments", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json() == []
        assert c.get("/healthz").status_code == 200
