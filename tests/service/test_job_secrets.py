"""Secrets never ride in a Ray job's runtime env (Ray shows it at ``GET /api/jobs/``): the job
gets the path of a 0600 file and reads the database URL from it; the API token never reaches
it. The real Executor builds the runtime env; nothing here needs Ray or MLflow up."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import pytest

from service.execution import Executor
from service.settings import SECRETS_FILE_ENV, Settings
from service.stack.processes import spawn as _spawn
from service.stack.secret_files import ray_auth_headers, write_private
from service.store import Store

TOKEN = "api-token-" + "t" * 24
PASSWORD = "db-pass-" + "p" * 24
DB_URL = f"postgresql+psycopg://ablate:{PASSWORD}@db.internal:5432/ablate"


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    for key in list(os.environ):
        if key.startswith("ABLATE_"):
            monkeypatch.delenv(key)
    return Settings(data_dir=tmp_path, auth_token=TOKEN, db_url=DB_URL,
                    ray_address="http://127.0.0.1:9", mlflow_tracking_uri="http://127.0.0.1:9")


def runtime_env(settings: Settings, tmp_path) -> dict:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        return Executor(settings, store)._runtime_env()
    finally:
        store.close()


def test_the_runtime_env_holds_no_secret(settings, tmp_path) -> None:
    env = runtime_env(settings, tmp_path)
    text = json.dumps(env)
    assert TOKEN not in text and PASSWORD not in text
    assert "ABLATE_AUTH_TOKEN" not in env["env_vars"] and "ABLATE_DB_URL" not in env["env_vars"]
    path = env["env_vars"][SECRETS_FILE_ENV]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert json.loads(Path(path).read_text()) == {"db_url": DB_URL}


def test_the_job_reads_its_settings_back_without_the_token(settings, tmp_path,
                                                           monkeypatch) -> None:
    env = runtime_env(settings, tmp_path)["env_vars"]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ABLATE_DB_URL", "sqlite:///the-node-env-loses.db")
    job = Settings()
    assert job.db_url == DB_URL and job.auth_token is None
    assert job.model_dump(exclude={"auth_token"}) == settings.model_dump(exclude={"auth_token"})


def test_a_named_secrets_file_that_is_missing_is_an_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(SECRETS_FILE_ENV, str(tmp_path / "gone.json"))
    with pytest.raises(RuntimeError, match=SECRETS_FILE_ENV):
        Settings(data_dir=tmp_path)


def test_the_tune_callback_pickles_without_the_database_url(settings, monkeypatch) -> None:
    """Tune cloudpickles its callbacks into the experiment's folder under the data dir."""
    from ray import cloudpickle

    from service.job.supervisor import _make_callback

    monkeypatch.setenv("ABLATE_DB_URL", DB_URL)
    callback = _make_callback()
    assert PASSWORD.encode() not in cloudpickle.dumps(callback)
    assert pickle.loads(cloudpickle.dumps(callback))._store is None


def test_no_stack_child_inherits_the_secrets(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ABLATE_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("ABLATE_DB_URL", DB_URL)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "some-other-ray-token")
    child = _spawn("env", ["env"], tmp_path)
    child.proc.wait(timeout=30)
    dumped = child.log_path.read_text()
    assert "PATH=" in dumped
    for secret in (TOKEN, PASSWORD, "some-other-ray-token"):
        assert secret not in dumped


def test_private_files_are_never_readable_by_others(tmp_path) -> None:
    path = write_private(tmp_path / "f", "x")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    write_private(path, "y")  # replaced atomically, mode kept
    assert path.read_text() == "y" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_the_jobs_client_sends_the_ray_token(tmp_path) -> None:
    path = write_private(tmp_path / "ray-token", "abc123\n")
    s = Settings(data_dir=tmp_path, ray_auth_token_file=path)
    assert ray_auth_headers(s) == {"Authorization": "Bearer abc123"}
    assert ray_auth_headers(Settings(data_dir=tmp_path)) == {}

