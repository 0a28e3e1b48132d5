"""``POST /experiments/<id>/evaluate`` and ``ablate evaluate`` on the real app and store (Ray
and MLflow at a closed port, so the job submission is left to the reconciler, as while Ray is
down): the tasks added to each variant's config with every trial key kept, one pending
evaluation per trial and task, idempotent, and every refusal a 4xx naming its field with
nothing stored changed."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from service import cli
from service.specs import expand, parse_spec, spec_to_json
from service.stack.processes import serve_in_thread
from service.states import EvaluationState
from service.store import Store
from service.submit import new_variants
from tests.service.api_client import make_client
from trainer.config import TrainConfig

SPEC = {"name": "later", "design": "explicit",
        "base": {"preset": "tiny", "set": {"schedule.steps": 3}},
        "variants": [{"name": "full", "set": {}},
                     {"name": "no-itm", "set": {"objectives.itm.enabled": False}}],
        "seeds": 2, "metrics": {"primary": "mean_recall", "reported": ["t2i_r1"]}}


def plant(store: Store, finish_all: bool = True) -> str:
    import json

    parsed = parse_spec(json.dumps(SPEC).encode())
    expansion = expand(parsed)
    exp = store.create_experiment(
        name=parsed.name, description="", spec=spec_to_json(parsed), design=parsed.design,
        baseline=expansion.baseline, primary_metric="mean_recall",
        variants=new_variants(expansion))
    for i, t in enumerate(exp.trials):
        if not finish_all and i == 0:
            continue
        store.mark_running(t.id, worker_pid=os.getpid())
        store.mark_finished(t.id, metrics={"mean_recall": 40.0 + i, "t2i_r1": 30.0},
                            mlflow_run_id=f"r{t.id}", mlflow_experiment_id="7", steps=3)
    return exp.id


@pytest.fixture
def client(tmp_path):
    c = make_client(tmp_path)
    with c:
        yield c


def test_evaluating_later_adds_the_tasks_keeps_the_keys_and_is_idempotent(client) -> None:
    store = client.store
    exp_id = plant(store)
    before = store.get_experiment(exp_id)
    r = client.post(f"/experiments/{exp_id}/evaluate",
                    json={"tasks": ["ve", "minimal_pairs"],
                          "settings": {"eval.downstream.ve.finetune.steps": 4}})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["added"] == 8 and body["tasks"] == ["ve", "minimal_pairs"]
    assert body["evaluations"] == {"pending": 8, "running": 0, "done": 0, "failed": 0}
    assert body["job_submission_id"] is None and "reconciler" in body["submit_error"]
    after = store.get_experiment(exp_id)
    for old, new in zip(before.variants, after.variants, strict=True):
        cfg = TrainConfig.model_validate(new.config)
        assert cfg.eval.downstream.tasks == ("ve", "minimal_pairs")
        assert cfg.eval.downstream.ve.finetune.steps == 4
        assert cfg.config_hash() == TrainConfig.model_validate(old.config).config_hash()
        assert [t.trial_key for t in new.trials] == [t.trial_key for t in old.trials]
    assert after.spec["metrics"]["reported"] == [
        "t2i_r1", "ve_accuracy", "minimal_pairs_text", "minimal_pairs_image",
        "minimal_pairs_group"]
    rows = store.evaluations.for_experiment(exp_id)
    assert sorted((e.trial_id, e.task) for e in rows) == sorted(
        (t.id, task) for t in after.trials for task in ("ve", "minimal_pairs"))
    assert {e.state for e in rows} == {EvaluationState.PENDING}
    # the same request again: nothing new stored, nothing new to run
    again = client.post(f"/experiments/{exp_id}/evaluate",
                        json={"tasks": ["ve", "minimal_pairs"],
                              "settings": {"eval.downstream.ve.finetune.steps": 4}})
    assert again.status_code == 200 and again.json()["added"] == 0
    assert store.counts()["evaluations"] == 8
    # /compare already has the blocks (no values yet), and the status is unchanged
    a = client.get(f"/experiments/{exp_id}/compare").json()
    assert [b["task"] for b in a["downstream"]["tasks"]] == ["ve", "minimal_pairs"]
    status = client.get(f"/experiments/{exp_id}").json()
    assert status["status"] == "finished"
    # the status lists every evaluation on its trial, and follows their states
    assert status["evaluations"] == {"pending": 8, "running": 0, "done": 0, "failed": 0}
    first = status["variants"][0]["trials"][0]
    assert [(e["task"], e["state"]) for e in first["evaluations"]] == [
        ("ve", "pending"), ("minimal_pairs", "pending")]
    ve = next(e for e in rows if e.trial_id == first["id"] and e.task == "ve")
    store.evaluations.mark_running(ve.id)
    store.evaluations.mark_done(first["id"], "ve", ve.evaluation_key, {"ve_accuracy": 0.5})
    status = client.get(f"/experiments/{exp_id}").json()
    assert status["evaluations"] == {"pending": 7, "running": 0, "done": 1, "failed": 0}
    done = status["variants"][0]["trials"][0]["evaluations"][0]
    assert done["state"] == "done" and done["metrics"] == {"ve_accuracy": 0.5}
    assert done["evaluation_key"] == ve.evaluation_key and done["attempts"] == 1


@pytest.mark.parametrize(("payload", "field", "reason"), [
    ({"tasks": ["ve", "retrieval"]}, "tasks[1]", "unknown downstream task 'retrieval'"),
    ({"tasks": ["ve", "ve"]}, "tasks[1]", "listed twice"),
    ({"tasks": []}, "tasks", "at least one"),
    ({"tasks": ["ve"], "settings": {"schedule.steps": 9}}, "settings.schedule.steps",
     "would change the trial"),
    ({"tasks": ["ve"], "settings": {"eval.downstream.tasks": ["vqa"]}},
     "settings.eval.downstream.tasks", "only eval.downstream"),
    ({"tasks": ["ve"], "settings": {"eval.downstream.ve.finetune.steps": 0}},
     "settings.eval.downstream.ve.finetune.steps", "greater than or equal to 1"),
    ({"tasks": ["ve"], "settings": {"eval.downstream.ve.finetune.nope": 1}},
     "settings.eval.downstream.ve.finetune.nope", "xtra"),
    ({"tasks": "ve"}, "tasks", "list"),
    ({"tasks": ["ve"], "other": 1}, "other", "xtra"),
])
def test_a_bad_request_is_a_422_naming_the_field_and_stores_nothing(
        client, payload, field, reason) -> None:
    exp_id = plant(client.store)
    before = client.store.get_experiment(exp_id)
    r = client.post(f"/experiments/{exp_id}/evaluate", json=payload)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(d["field"] == field and reason in d["reason"] for d in detail), detail
    assert client.store.counts()["evaluations"] == 0
    assert client.store.get_experiment(exp_id) == before


def test_an_unknown_or_unfinished_experiment_is_refused(client) -> None:
    r = client.post("/experiments/exp-nope/evaluate", json={"tasks": ["ve"]})
    assert r.status_code == 404 and r.json()["detail"][0]["field"] == "id"
    exp_id = plant(client.store, finish_all=False)
    r = client.post(f"/experiments/{exp_id}/evaluate", json={"tasks": ["ve"]})
    assert r.status_code == 409 and r.json()["detail"][0]["field"] == "status"
    assert client.store.counts()["evaluations"] == 0


def test_the_cli_posts_the_tasks(client) -> None:
    """``ablate evaluate`` against the app served over HTTP (uvicorn in a thread)."""
    exp_id = plant(client.store)
    with serve_in_thread(client.app) as base:
        out = CliRunner().invoke(cli.app, ["evaluate", exp_id, "--task", "minimal_pairs",
                                           "--task", "ve", "--set",
                                           "eval.downstream.ve.finetune.steps=4", "--url", base])
        assert out.exit_code == 0, out.output
        assert "8 new evaluations" in out.output
        bad = CliRunner().invoke(cli.app, ["evaluate", exp_id, "--task", "vqa2", "--url", base])
    assert bad.exit_code == 1 and "tasks[0]" in bad.output


def test_the_dry_run_lists_the_tasks_with_their_cost(client, tmp_path) -> None:
    spec = {**SPEC, "base": {"preset": "tiny", "set": {
        "schedule.steps": 3, "data.batch_size": 8,
        "eval.downstream.tasks": ["ve", "minimal_pairs"],
        "eval.downstream.ve.finetune.steps": 4, "eval.downstream.ve.finetune.batch_size": 8}},
        "variants": [{"name": "full", "set": {}},
                     {"name": "bigger-ve", "set": {"eval.downstream.ve.finetune.steps": 8}}]}
    before = client.store.counts()
    r = client.post("/experiments", params={"dry_run": True}, json=spec)
    assert r.status_code == 200, r.text
    plan = r.json()["downstream"]
    assert plan["tasks"] == [
        {"task": "ve", "primary_metric": "ve_accuracy", "trials": 4,
         "finetune_samples_per_trial": (32 + 64) / 2, "finetune_samples": 2 * (32 + 64)},
        {"task": "minimal_pairs", "primary_metric": "minimal_pairs_group", "trials": 4,
         "finetune_samples_per_trial": 0, "finetune_samples": 0}]
    assert plan["pretraining_samples_per_trial"] == 24 and plan["pretraining_samples"] == 96
    assert plan["finetune_samples"] == 192
    assert client.store.counts() == before
    # the CLI's dry run prints the same plan, over HTTP
    path = tmp_path / "spec.json"
    import json

    path.write_text(json.dumps(spec))
    with serve_in_thread(client.app) as base:
        out = CliRunner().invoke(cli.app, ["submit", str(path), "--dry-run", "--url", base])
    assert out.exit_code == 0, out.output
    assert '"finetune_samples": 192' in out.output
    assert client.post("/experiments", params={"dry_run": True},
                       json=SPEC).json()["downstream"] is None
