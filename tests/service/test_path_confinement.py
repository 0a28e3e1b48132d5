"""A spec cannot make a worker read or write outside the roots the service allows.

The real app on a real SQLite store (dry runs and refused POSTs never reach Ray or MLflow),
real files and symlinks under tmp_path: every path a config can name must resolve, symlinks
followed, under the data dir or ``ABLATE_DATA_ROOTS``; the refusal is a 422 naming the field,
and the store is left as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.paths import check_config_paths
from service.settings import Settings
from trainer.config import build_config


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("paths")
    data_dir, datasets, outside = base / "service", base / "datasets", base / "outside"
    for d in (data_dir, datasets / "coco" / "images", outside):
        d.mkdir(parents=True)
    (datasets / "coco" / "karpathy.json").write_text("{}")
    (outside / "secret.json").write_text("{}")
    (datasets / "escape").symlink_to(outside)  # a symlink inside a root, pointing out of it
    return {"data_dir": data_dir, "datasets": datasets, "outside": outside}


@pytest.fixture(scope="module")
def client(roots):
    settings = Settings(data_dir=roots["data_dir"], data_roots=[roots["datasets"]],
                        ray_address="http://127.0.0.1:9", mlflow_tracking_uri="http://127.0.0.1:9")
    app = create_app(settings, reconcile=False)
    with TestClient(app) as c:
        c.store = app.state.store
        c.settings = settings
        yield c


def spec(**dotted: Any) -> dict[str, Any]:
    return {"name": "paths", "design": "explicit", "variants": {"only": {}}, "seeds": 1,
            "base": {"preset": "tiny", "set": {"schedule.steps": 2, "init.warm_start": False,
                                                **dotted}}}


def coco(root: str, annotations: str = "karpathy.json") -> dict[str, Any]:
    return spec(**{"data.dataset": "coco", "data.root": root, "data.annotations": annotations})


def refused_fields(client, body: dict[str, Any]) -> list[str]:
    before = client.get("/experiments").json()
    for url in ("/experiments?dry_run=true", "/experiments"):
        r = client.post(url, json=body)
        assert r.status_code == 422, (url, r.status_code, r.text[:300])
    assert client.get("/experiments").json() == before  # nothing stored
    return [d["field"] for d in r.json()["detail"]]


def test_host_paths_are_refused_naming_the_field(client, roots) -> None:
    outside = roots["outside"]
    cases = {
        "data.root": coco("/etc", "passwd"),
        "data.annotations": coco(str(roots["datasets"] / "coco"), "../../outside/secret.json"),
        "data.tokenizer_path": spec(**{"data.tokenizer_path": "/etc/passwd"}),
        "model.vision.pretrained": spec(**{"model.vision.pretrained": "/etc"}),
        "model.text.pretrained": spec(**{"model.text.pretrained": str(outside)}),
        "objectives.mrc_kl.teacher": spec(**{"objectives.mrc_kl.enabled": True,
                                             "objectives.mrc_kl.teacher": "/etc/passwd"}),
    }
    for field, body in cases.items():
        fields = refused_fields(client, body)
        assert any(f.endswith(field) for f in fields), (field, fields)


def test_symlinks_are_followed(client, roots) -> None:
    escape = roots["datasets"] / "escape"
    assert any(f.endswith("data.root") for f in refused_fields(client, coco(str(escape))))
    absolute = coco(str(roots["datasets"] / "coco"), str(roots["outside"] / "secret.json"))
    assert any(f.endswith("data.annotations") for f in refused_fields(client, absolute))
    via_link = coco(str(roots["datasets"] / "coco"), "../escape/secret.json")
    assert any(f.endswith("data.annotations") for f in refused_fields(client, via_link))


def test_relative_paths_and_generated_data_outside_the_data_dir_are_refused(client, roots):
    assert any(f.endswith("data.tokenizer_path")
               for f in refused_fields(client, spec(**{"data.tokenizer_path": "tok.json"})))
    # shapes writes its generated data there: only under the data dir, never a data root
    written = spec(**{"data.root": str(roots["datasets"] / "gen")})
    assert any(f.endswith("data.root") for f in refused_fields(client, written))
    assert not (roots["datasets"] / "gen").exists()


def test_confined_paths_are_accepted_and_nothing_is_created(client, roots) -> None:
    fresh = roots["data_dir"] / "cache" / "shapes"
    r = client.post("/experiments?dry_run=true", json=spec(**{"data.root": str(fresh)}))
    assert r.status_code == 200, r.text
    assert not fresh.exists()
    r = client.post("/experiments?dry_run=true", json=coco(str(roots["datasets"] / "coco")))
    assert r.status_code == 200, r.text


def test_the_worker_check_sees_a_symlink_swapped_in_after_the_post(roots, tmp_path) -> None:
    settings = Settings(data_dir=roots["data_dir"], data_roots=[roots["datasets"]])
    link = roots["datasets"] / "swapped"
    link.mkdir()
    config = build_config("tiny", dotted={"data.dataset": "imagefolder", "data.root": str(link),
                                          "init.warm_start": False})
    assert check_config_paths(config, settings) == []
    link.rmdir()
    link.symlink_to(roots["outside"])
    assert [r.field for r in check_config_paths(config, settings)] == ["data.root"]


def _shards(train: str, val: str, test: str) -> dict[str, Any]:
    return spec(**{"data.dataset": "webdataset", "data.train_shards": train,
                   "data.val_shards": val, "data.test_shards": test})


def test_shard_lists_are_confined_shard_by_shard(client, roots) -> None:
    inside = str(roots["datasets"] / "cc3m" / "{00000..00002}.tar")
    fine = _shards(inside, inside, "s3://bucket/cc3m/test-{0..1}.tar")
    r = client.post("/experiments?dry_run=true", json=fine)
    assert r.status_code in (200, 201), r.text[:300]
    # one shard of a brace list outside (through a symlink too), relative, or with credentials
    escaping = str(roots["datasets"]) + "/{cc3m,escape}/00000.tar"
    field = "variants[only].data.{}_shards".format
    assert refused_fields(client, _shards(escaping, inside, inside)) == [field("train")]
    assert refused_fields(client, _shards(inside, "shards/0.tar", inside)) == [field("val")]
    assert refused_fields(client, _shards(
        inside, inside, "s3://key:secret@bucket/0.tar")) == [field("test")]
    settings = Settings(data_dir=roots["data_dir"], data_roots=[roots["datasets"]])
    config = build_config("tiny", dotted={"data.dataset": "webdataset", "init.warm_start": False,
                                          "data.train_shards": escaping,
                                          "data.val_shards": inside, "data.test_shards": inside})
    (refusal,) = check_config_paths(config, settings)
    assert refusal.field == "data.train_shards" and "escape/00000.tar" in refusal.reason
