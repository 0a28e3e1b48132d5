"""WebDataset shards, end to end on real tars written by `ablate data shard`'s converter: read
back as written (local and S3), clear errors before training, the same order for the same
seed, disjoint rank x worker parts whose union is the epoch, exact resume mid-epoch."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import torch

from tests.moto_s3 import moto_s3
from tests.trainer.shard_data import make_shards, shard_config
from trainer import storage
from trainer.checkpoint import load_latest
from trainer.config import build_config
from trainer.config.shards import expand
from trainer.data.benchmark import load_splits
from trainer.data.pipeline import PairImages, Plan, loader
from trainer.data.shards import ShardError, index_shards
from trainer.distributed import DataParallel
from trainer.loop import Trainer, train
from trainer.sampler import PairSampler

BUCKET = "ablate-shards"


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("shards")
    return tmp, make_shards(tmp)


@pytest.fixture(scope="module")
def s3_shards(shards) -> Iterator[dict[str, str]]:
    """The same shards uploaded to moto's S3 server, and their s3:// patterns."""
    tmp, patterns = shards
    with moto_s3(BUCKET) as endpoint, pytest.MonkeyPatch.context() as mp:
        mp.setenv(storage.ENDPOINT_ENV, endpoint)
        client = boto3.client("s3", endpoint_url=endpoint)
        for path in sorted((tmp / "shards").rglob("*.tar")):
            key = f"corpus/{path.relative_to(tmp / 'shards')}"
            client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
        yield {s: p.replace(str(tmp / "shards"), f"s3://{BUCKET}/corpus")
               for s, p in patterns.items()}


def test_brace_patterns_expand_in_order_and_refuse_nothing() -> None:
    assert expand("d/{00000..00002}.tar") == ["d/00000.tar", "d/00001.tar", "d/00002.tar"]
    assert expand("a/{1,0}.tar::b/x.tar::a/1.tar") == ["a/1.tar", "a/0.tar", "b/x.tar"]
    with pytest.raises(ValueError, match="data.val_shards: .* names no shard"):
        expand(" :: ", "data.val_shards")


def test_shards_read_back_what_the_source_holds(shards) -> None:
    tmp, patterns = shards
    source = load_splits(build_config("tiny", dotted={
        "data.num_train_images": 40, "data.num_val_images": 10, "data.num_test_images": 10,
        "data.captions_per_image": 2, "data.image_size": 32,
        "data.root": str(tmp / "shapes")}).data)
    read = load_splits(shard_config(tmp, patterns).data)
    assert patterns["train"].endswith("train/{00000..00002}.tar")  # 40 images, 16 a shard
    for split in ("train", "val", "test"):
        a, b = source[split], read[split]
        assert b.captions == a.captions and torch.equal(b.caption_image, a.caption_image)
        assert b.num_images == a.num_images and b.skipped == {} and b.seen == a.num_images
    # JPEG at quality 90: close to the source pixels, not equal
    diff = (read["test"].load_images(torch.arange(10)) - source["test"].load_images(
        torch.arange(10))).abs().mean()
    assert 0 < float(diff) < 0.1


def test_a_missing_shard_or_a_pattern_naming_nothing_is_an_error_naming_it(shards) -> None:
    tmp, patterns = shards
    missing = patterns["train"].replace("00002}", "00003}")
    with pytest.raises(ShardError, match=r"data.train_shards: shard '.*00003.tar' does not"):
        index_shards(missing, "data.train_shards")
    with pytest.raises(ShardError, match="data.val_shards: .* names no shard"):
        index_shards("::", "data.val_shards")
    empty = tmp / "empty.tar"
    tarfile.open(empty, "w").close()
    with pytest.raises(ShardError, match="data.test_shards: no readable sample"):
        index_shards(str(empty), "data.test_shards")
    with pytest.raises(ValueError, match="test_shards: required"):
        build_config("tiny", dotted={"data.dataset": "webdataset",
                                     "data.train_shards": "a.tar", "data.val_shards": "b.tar"})


def test_an_unreadable_bucket_is_an_error_naming_the_shard(s3_shards) -> None:
    bad = s3_shards["val"].replace(BUCKET, "no-such-bucket")
    with pytest.raises(ShardError, match=r"data.val_shards: .*no-such-bucket/corpus/val"):
        index_shards(bad, "data.val_shards")


def test_shards_in_s3_read_as_the_local_copy(shards, s3_shards) -> None:
    tmp, patterns = shards
    local = load_splits(shard_config(tmp, patterns).data)
    remote = load_splits(shard_config(tmp, s3_shards).data)
    for split in ("train", "test"):
        assert remote[split].captions == local[split].captions
        assert remote[split].image_ids == local[split].image_ids
        idx = torch.tensor([0, 7, 9])
        assert torch.equal(remote[split].load_images(idx), local[split].load_images(idx))


def _epoch_reads(split, world: int, workers: int, seed: int) -> list[tuple[int, int, list[int]]]:
    """(rank, worker, pairs) of every micro-batch the real reader loads in epoch 0."""
    batches = PairSampler(len(split), 8, seed).batches_per_epoch
    dataset = PairImages(split.source, split.caption_image, 32, augment=False, seed=seed)
    reads = []
    for rank in range(world):
        dp = DataParallel(rank, world) if world > 1 else None
        plan = Plan(len(split), 8, seed, {"epoch": 0, "offset": 0},
                    None if dp is None else dp.shard)
        it = loader(dataset, plan, workers=workers, prefetch=2, pin_memory=False)
        for _ in range(batches):
            item = next(it)
            assert item["epoch"] == 0 and item["rows"] == item["planned"]
            expected = torch.stack([split.source.row(int(split.caption_image[p]))
                                    for p in item["rows"]])
            assert torch.equal(item["images"], expected)  # the pixels of the pairs it names
            reads.append((rank, item["worker"], item["planned"]))
        del it
    return reads


@pytest.mark.parametrize(("world", "workers"), [(1, 0), (2, 2)])
def test_ranks_and_workers_read_disjoint_parts_whose_union_is_the_epoch(
    shards, world: int, workers: int
) -> None:
    tmp, patterns = shards
    split = load_splits(shard_config(tmp, patterns).data)["train"]
    reads = _epoch_reads(split, world, workers, seed=4)
    parts: dict[tuple[int, int], list[int]] = {}
    for rank, worker, pairs in reads:
        parts.setdefault((rank, worker), []).extend(pairs)
    assert len(parts) == world * max(1, workers)  # every rank x worker took a part
    everything = [p for part in parts.values() for p in part]
    assert len(everything) == len(set(everything)) == len(split) == 80  # disjoint
    assert sorted(everything) == list(range(80))  # and together the whole epoch


def test_the_order_is_the_seeds_and_the_fingerprint_covers_the_shards(shards, tmp_path) -> None:
    tmp, patterns = shards
    a = Trainer(shard_config(tmp, patterns), 3, checkpoint_dir=None)
    b = Trainer(shard_config(tmp, patterns), 3, checkpoint_dir=None)
    c = Trainer(shard_config(tmp, patterns), 4, checkpoint_dir=None)
    assert a.fingerprints["data_order"] == b.fingerprints["data_order"]
    assert a.fingerprints["data_order"] != c.fingerprints["data_order"]
    # the same permutation over the same shards named in another order is another data order
    train = patterns["train"]
    swapped = dict(patterns, train=train.replace("{00000..00002}", "{00001,00000,00002}"))
    d = Trainer(shard_config(tmp, swapped), 3, checkpoint_dir=None)
    assert torch.equal(d.sampler.permutation(), a.sampler.permutation())
    assert d.fingerprints["data_order"] != a.fingerprints["data_order"]


class _Crash(Exception):
    pass


def _crash_at_12(progress) -> None:
    if progress.step == 12:
        raise _Crash


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_run_resumed_mid_epoch_from_shards_matches_an_uninterrupted_one(
    shards, where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    tmp, patterns = shards
    if where == "s3":
        patterns = request.getfixturevalue("s3_shards")
    cfg = shard_config(tmp, patterns)
    reference = train(cfg, seed=5)
    # interrupted with 2 DataLoader workers: the workers change the speed, never a number
    workers = shard_config(tmp, patterns, **{"data.num_workers": 0 if where == "s3" else 2})
    assert workers.config_hash() == cfg.config_hash()
    ckpt = tmp_path / "ckpt"
    with pytest.raises(_Crash):
        train(workers, seed=5, checkpoint_dir=ckpt, progress=_crash_at_12)
    state = load_latest(ckpt)
    assert state["step"] == 8 and state["sampler"] == {"epoch": 1, "offset": 48}  # mid-epoch
    resumed = train(workers, seed=5, checkpoint_dir=ckpt)
    assert resumed.metrics == reference.metrics
    timing = {"samples_per_s"}
    assert {k: v for k, v in resumed.history.items() if k not in timing} == {
        k: v for k, v in reference.history.items() if k not in timing}
