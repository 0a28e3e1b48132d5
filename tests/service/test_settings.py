"""Settings travel to subprocesses and the Ray job as ABLATE_* variables: all of them."""

from __future__ import annotations

import os

from pydantic import SecretStr

from service.settings import Settings


def test_every_setting_reaches_the_environment_and_comes_back(tmp_path, monkeypatch) -> None:
    for key in list(os.environ):
        if key.startswith("ABLATE_"):
            monkeypatch.delenv(key)
    original = Settings(
        data_dir=tmp_path, port=8123, mlflow_port=5123, ray_dashboard_port=8299,
        ray_gcs_port=6400, max_variants=7, max_trials=9, max_retries=1, max_job_resubmits=5,
        reconcile_interval_s=2.5, auth_token=SecretStr("s3cret"),
        db_url="sqlite:///elsewhere.db", mlflow_tracking_uri="http://127.0.0.1:5999",
        data_roots=[tmp_path / "datasets", tmp_path / "weights"],
    )
    env = original.env()
    assert set(env) == {f"ABLATE_{name.upper()}" for name in Settings.model_fields
                        if getattr(original, name) is not None}
    assert env["ABLATE_AUTH_TOKEN"] == "s3cret" and env["ABLATE_RAY_GCS_PORT"] == "6400"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings() == original


def test_an_unset_token_stays_unset(tmp_path) -> None:
    assert "ABLATE_AUTH_TOKEN" not in Settings(data_dir=tmp_path).env()
