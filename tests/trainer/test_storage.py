"""Shared storage against a real S3 server (moto's, on loopback): checkpoints and warm starts
round-trip through s3:// as through a folder, a failed or concurrent write never shows a reader
a partial object, and a run resumed from an S3 checkpoint ends where an uninterrupted one does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import torch

from tests.moto_s3 import moto_s3
from tests.trainer.test_loop import small_config
from tests.trainer.test_warm_start import config as warm_config
from trainer import storage
from trainer.checkpoint import CHECKPOINT_NAME, load_latest, rng_state, save_atomic
from trainer.loop import train
from trainer.warm_start import ensure_warm_start, warm_start_key, warm_start_path

BUCKET = "ablate-test"
MIB = 1 << 20


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """A moto S3 server with the AWS variables and the endpoint trials would read."""
    with moto_s3(BUCKET) as endpoint, pytest.MonkeyPatch.context() as mp:
        mp.setenv(storage.ENDPOINT_ENV, endpoint)
        yield endpoint


@pytest.fixture
def s3(s3_server: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, object]]:
    """A fresh prefix per test, and a boto3 client to look at the bucket independently."""
    prefix = request.node.name.replace("[", "-").replace("]", "")
    yield f"s3://{BUCKET}/{prefix}", boto3.client("s3", endpoint_url=s3_server)


def _keys(client: object, prefix: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)  # type: ignore[attr-defined]
    # pyarrow leaves an empty "folder/" marker behind a deleted key: not an object we wrote
    return sorted(o["Key"] for o in listing.get("Contents", []) if not o["Key"].endswith("/"))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_checkpoint_round_trips(where: str, tmp_path: Path, request) -> None:
    root = (request.getfixturevalue("s3")[0] if where == "s3" else tmp_path)
    directory = storage.join(root, "exp", "trial")
    assert load_latest(directory) is None
    payload = {"step": 7, "w": torch.randn(64, 32), "rng": rng_state(), "history": {"l": [(1, .5)]}}
    target = save_atomic(payload, directory)
    assert storage.exists(target) and str(target).endswith(f"trial/{CHECKPOINT_NAME}")
    back = load_latest(directory)
    assert back is not None and back["step"] == 7 and back["history"] == payload["history"]
    assert torch.equal(back["w"], payload["w"])
    assert torch.equal(back["rng"]["torch"], payload["rng"]["torch"])


def test_an_upload_failing_midway_leaves_the_previous_checkpoint(s3) -> None:
    root, client = s3
    save_atomic({"step": 1, "w": torch.ones(3)}, root)

    def half_then_crash(fh) -> None:
        fh.write(b"x" * (24 * MIB))  # several multipart parts reach the server first
        raise RuntimeError("node lost mid-upload")

    with pytest.raises(RuntimeError, match="mid-upload"):
        storage.write_atomic(storage.join(root, CHECKPOINT_NAME), half_then_crash)
    assert load_latest(root)["step"] == 1
    prefix = root.removeprefix(f"s3://{BUCKET}/")
    assert _keys(client, prefix) == [f"{prefix}/{CHECKPOINT_NAME}"]  # no temporary left
    size = client.head_object(Bucket=BUCKET, Key=f"{prefix}/{CHECKPOINT_NAME}")["ContentLength"]
    assert size < MIB


def test_a_reader_during_writes_sees_whole_objects_only(s3) -> None:
    root, _ = s3
    loc = storage.join(root, "blob")
    size = 12 * MIB  # over pyarrow's part size: written as a multipart upload
    storage.write_bytes(loc, bytes([0]) * size)
    seen: set[int] = set()
    errors: list[str] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                data = storage.read_bytes(loc)
                if len(data) != size or data.count(data[:1]) != size:
                    errors.append(f"partial object: {len(data)} bytes")
                seen.add(data[0])
        except Exception as err:  # a missing object is a failure too
            errors.append(repr(err))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version in range(1, 4):
            storage.write_bytes(loc, bytes([version]) * size)
    finally:
        done.set()
        reader.join()
    assert not errors
    assert storage.read_bytes(loc)[0] == 3 and seen and seen <= {0, 1, 2, 3}


class _Crash(Exception):
    pass


def test_a_run_resumed_from_s3_matches_an_uninterrupted_one(s3, tmp_path: Path) -> None:
    root, client = s3
    cfg = small_config(tmp_path, **{"schedule.steps": 16})  # checkpoints every 8, logs every 4
    reference = train(cfg, seed=5)

    def crash_at_12(progress) -> None:
        if progress.step == 12:
            raise _Crash
    ckpt = storage.join(root, "exp", "trial")
    with pytest.raises(_Crash):
        train(cfg, seed=5, checkpoint_dir=ckpt, progress=crash_at_12)
    assert load_latest(ckpt)["step"] == 8
    resumed = train(cfg, seed=5, checkpoint_dir=ckpt)  # "another node": only the URI is shared
    assert resumed.metrics == reference.metrics
    assert load_latest(ckpt)["step"] == 16
    assert not (tmp_path / "exp").exists()


def test_the_warm_start_lives_under_the_storage_uri(s3, tmp_path: Path, monkeypatch) -> None:
    root, client = s3
    monkeypatch.setenv(storage.STORAGE_URI_ENV, root)
    cfg = warm_config(tmp_path)
    warm = ensure_warm_start(cfg)
    assert warm.path == f"{root}/warm_start/{warm_start_key(cfg)}.pt"
    assert storage.exists(warm.path) and not warm_start_path(cfg).exists()
    again = ensure_warm_start(cfg)  # read back, not recomputed
    assert again.key == warm.key and again.summary == warm.summary
    assert all(torch.equal(again.state[k], v) for k, v in warm.state.items())


def test_uris_carry_no_credentials() -> None:
    assert storage.check_uri("s3://bucket/prefix") == "s3://bucket/prefix"
    assert storage.check_uri("/data/shared") == "/data/shared"
    for bad in ("s3://key:secret@bucket/p", "gs://bucket/p", "s3://bucket/p?endpoint=x", "s3://"):
        with pytest.raises(ValueError):
            storage.check_uri(bad)
    assert storage.join("s3://b/p/", "a", "b.pt") == "s3://b/p/a/b.pt"
    assert storage.join(Path("/x"), "a") == Path("/x/a")
