"""The minimal-pair probe: which groups it scores, and that its batched 2 x 2 matrices are the
scores of each (caption, image) pair taken one at a time."""

from __future__ import annotations

from pathlib import Path

import torch

from trainer.config import build_config
from trainer.data.types import ImageTextSplit, TensorImages
from trainer.downstream.metrics import minimal_pair_scores
from trainer.downstream.minimal_pairs import pair_groups, score_minimal_pairs
from trainer.loop import Trainer


def _split(groups: list[int], caption_image: list[int]) -> ImageTextSplit:
    n = len(groups)
    return ImageTextSplit(
        name="test", captions=[f"c{i}" for i in range(len(caption_image))],
        caption_image=torch.tensor(caption_image), noisy=torch.zeros(len(caption_image),
                                                                     dtype=torch.bool),
        num_images=n, source=TensorImages(torch.zeros(n, 3, 8, 8, dtype=torch.uint8)),
        image_group=torch.tensor(groups))


def test_groups_are_the_pairs_with_the_first_caption_of_each_image() -> None:
    # images 0,1 a pair; 2 alone; 3,4 a pair; 5,6,7 a group of three (not a minimal pair)
    split = _split([0, 0, 2, 3, 3, 5, 5, 5], [0, 0, 1, 2, 3, 3, 4, 5, 6, 7])
    assert pair_groups(split) == [(0, 1, 0, 2), (3, 4, 4, 6)]


def test_batched_scores_equal_pair_by_pair_scores(tmp_path: Path) -> None:
    for itm in (True, False):
        cfg = build_config("tiny", dotted={
            "data.root": str(tmp_path), "init.warm_start": False, "data.num_train_images": 16,
            "data.num_val_images": 4, "data.num_test_images": 40, "runtime.threads": 1,
            "objectives.itm.enabled": itm, "objectives.itc.queue_size": 16})
        trainer = Trainer(cfg, 1, checkpoint_dir=None)
        pre, split = trainer.pretrainer, trainer.bench.test
        ids, mask = trainer.bench.tokenize(split.captions)
        got = score_minimal_pairs(pre, split, ids, mask, device=torch.device("cpu"))
        pre.eval()
        matrices = []
        with torch.no_grad():
            for i0, i1, c0, c1 in pair_groups(split):
                rows = []
                for c in (c0, c1):
                    length = int(mask[c].sum())
                    t = pre.model.encode_text(ids[c:c + 1, :length], mask[c:c + 1, :length])
                    row = []
                    for i in (i0, i1):
                        v = pre.model.encode_image(split.load_images(torch.tensor([i])))
                        if itm:
                            row.append(float(pre.itm_scores(t, mask[c:c + 1, :length], v)[0]))
                        else:
                            tf = pre.model.text_feat(t, mask[c:c + 1, :length])
                            row.append(float((tf * pre.model.image_feat(v)).sum()))
                    rows.append(row)
                matrices.append(rows)
        want = minimal_pair_scores(matrices)
        assert got.protocol == ("itm" if itm else "itc")
        assert got.metrics["groups"] == len(matrices) > 0
        assert (got.metrics["text"], got.metrics["image"], got.metrics["group"]) == (
            want.text, want.image, want.group)
