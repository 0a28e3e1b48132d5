"""The storage URI setting: today's local layout by default, a shared s3:// prefix when set, the
same location from every node, and never a credential in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_checkpoints_stay_under_the_data_dir_by_default(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.checkpoint_dir("exp", "key") == tmp_path.resolve() / "checkpoints" / "exp" / "key"
    assert s.job_env(tmp_path / "secrets.json")["ABLATE_STORAGE_URI"] == ""


def test_an_s3_uri_reaches_the_trials_and_the_job(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, storage_uri="s3://bucket/ablate/",
                 storage_endpoint_url="http://minio:9000")
    assert s.checkpoint_dir("exp", "key") == "s3://bucket/ablate/checkpoints/exp/key"
    env = s.job_env(tmp_path / "secrets.json")
    assert env["ABLATE_STORAGE_URI"] == "s3://bucket/ablate/"
    assert env["ABLATE_STORAGE_ENDPOINT_URL"] == "http://minio:9000"


def test_a_local_storage_path_is_made_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings(data_dir=tmp_path, storage_uri="shared")
    assert s.checkpoint_dir("e", "k") == tmp_path.resolve() / "shared" / "checkpoints" / "e" / "k"


@pytest.mark.parametrize("field,value", [
    ("storage_uri", "s3://AKIA:secret@bucket/p"), ("storage_uri", "gs://bucket/p"),
    ("storage_endpoint_url", "http://user:pw@minio:9000"),
])
def test_no_credentials_in_storage_settings(tmp_path: Path, field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, **{field: value})
