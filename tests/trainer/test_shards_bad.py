"""Bad data in real shards: a corrupt JPEG, a truncated JPEG, an empty caption and a tar cut
off mid-member are skipped and counted, the trial finishes and its MLflow run shows the counts;
past ``data.max_bad_fraction`` it is a clear error naming the field."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.trainer.shard_data import make_shards, replace_member, shard_config, truncate_inside
from trainer.data.benchmark import load_splits
from trainer.data.decode import BadImage, decode_square
from trainer.data.pipeline import BadDataError
from trainer.data.shards import ShardError, index_shards
from trainer.loop import train
from trainer.trial import run_trial


def _damage(tmp: Path) -> dict[str, str]:
    """Shards of 40 training images with: image 3 garbage after a JPEG marker, image 5 cut to
    half its bytes, image 20's caption empty (shard 1), and shard 2 cut inside image 39."""
    patterns = make_shards(tmp)
    train_dir = tmp / "shards" / "train"
    good = train_dir / "00000.tar"
    with tarfile.open(good) as tar:
        jpeg = tar.extractfile("000000005.jpg").read()  # type: ignore[union-attr]
    replace_member(good, "000000003.jpg", b"\xff\xd8\xff\xe0" + b"\x13" * 600)
    replace_member(good, "000000005.jpg", jpeg[: len(jpeg) // 2])
    replace_member(train_dir / "00001.tar", "000000020.txt", b"  \n")
    replace_member(train_dir / "00001.tar", "000000020.json", b'{"caption": " "}')
    truncate_inside(train_dir / "00002.tar", "000000039.jpg")
    return patterns


def test_corrupt_and_truncated_jpegs_are_bad_images() -> None:
    with pytest.raises(BadImage):
        decode_square(b"\xff\xd8\xff\xe0" + b"\x13" * 600, 32)
    with pytest.raises(BadImage):
        decode_square(b"not an image", 32)


def test_read_time_skips_are_counted_per_reason(tmp_path: Path) -> None:
    patterns = _damage(tmp_path)
    index = index_shards(patterns["train"], "data.train_shards")
    assert dict(index.skipped) == {"empty_caption": 1, "broken_member": 1}
    assert index.seen == 40 and len(index) == 38
    assert "00002.tar/000000039" not in index.names and "00001.tar/000000020" not in index.names
    with pytest.raises(ShardError, match=r"data.max_bad_fraction: 2 of the 40 samples of "
                                         r"data.train_shards"):
        load_splits(shard_config(tmp_path, patterns, **{"data.max_bad_fraction": 0.04}).data)


def test_too_many_unreadable_images_while_training_is_an_error_naming_the_field(
    tmp_path: Path,
) -> None:
    patterns = _damage(tmp_path)
    # 2 read-time skips + 1 > 0.06 x 40: the first bad JPEG met stops it
    cfg = shard_config(tmp_path, patterns, **{"data.max_bad_fraction": 0.06})
    with pytest.raises(BadDataError, match="data.max_bad_fraction: 3 of the 40 training"):
        train(cfg, seed=0)


def test_a_trial_over_damaged_shards_finishes_and_its_run_shows_the_skips(tmp_path: Path) -> None:
    patterns = _damage(tmp_path)
    cfg = shard_config(tmp_path, patterns, **{"data.max_bad_fraction": 0.2,
                                              "data.num_workers": 2})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_trial(cfg, 0, tracking_uri=uri, experiment_name="bad-data",
                       checkpoint_dir=tmp_path / "ckpt")
    run = MlflowClient(uri).get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    # 16 steps x 16 pairs over 76 pairs: every pair seen, so both bad JPEGs were met
    assert run.data.metrics["data_skipped_read"] == 2
    assert run.data.metrics["data_skipped_decode"] == 2
    assert result.metrics["mean_recall"] >= 0
