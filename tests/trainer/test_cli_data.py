"""`ablate data shard` on an image folder: every split as shards, the source files copied byte
for byte, and the printed patterns train-ready (the shards read back as the folder)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from service.cli import app
from trainer.config import build_config
from trainer.data.benchmark import load_splits


def _folder(root: Path) -> dict[str, dict]:
    rng = np.random.default_rng(0)
    captions = {}
    for i in range(9):
        name = f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (20 + i, 30, 3), np.uint8)).save(root / name)
        captions[name] = {"captions": [f"picture {i} on the left", f"image number {i}"],
                          "split": ("train", "train", "train", "val", "test")[min(i, 4)]
                          if i < 5 else "train"}
    (root / "captions.json").write_text(json.dumps(captions))
    return captions


def test_an_image_folder_becomes_shards_that_read_back_as_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    root.mkdir()
    _folder(root)
    sets = ["data.dataset=imagefolder", f"data.root={root}", "init.warm_start=false",
            "data.image_size=16"]
    result = CliRunner().invoke(app, ["data", "shard", "tiny", "--out", str(tmp_path / "out"),
                                      "--per-shard", "4", "--format", "png",
                                      *[a for s in sets for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    patterns = json.loads(result.stdout)
    assert patterns["data.dataset"] == "webdataset"
    assert patterns["data.train_shards"].endswith("train/{00000..00001}.tar")  # 7 images, 4 a shard
    with tarfile.open(tmp_path / "out" / "train" / "00000.tar") as tar:
        assert tar.getnames()[:3] == ["000000000.json", "000000000.png", "000000000.txt"]
        png = tar.extractfile("000000000.png").read()  # type: ignore[union-attr]
        assert png == (root / "img0.png").read_bytes()  # copied, not re-encoded
        meta = json.loads(tar.extractfile("000000000.json").read())  # type: ignore[union-attr]
    assert meta == {"caption": "picture 0 on the left",
                    "captions": ["picture 0 on the left", "image number 0"]}
    folder = load_splits(build_config("tiny", dotted={
        "init.warm_start": False, "data.dataset": "imagefolder", "data.root": str(root),
        "data.image_size": 16}).data)
    shards = load_splits(build_config("tiny", dotted={
        "init.warm_start": False, "data.image_size": 16,
        **{k: v for k, v in patterns.items()}}).data)
    for split in ("train", "val", "test"):
        assert shards[split].captions == folder[split].captions
        n = torch.arange(folder[split].num_images)
        assert torch.equal(shards[split].load_images(n), folder[split].load_images(n))


def test_shard_refuses_a_config_it_cannot_read(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "shard", "tiny", "--out", str(tmp_path),
                                      "--set", "data.dataset=coco"])
    assert result.exit_code == 2
    assert "data.root" in result.output or "init.warm_start" in result.output
