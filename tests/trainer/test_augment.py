"""ALBEF's augmentation, checked against its definition: RandomResizedCrop's box law (scale
0.5-1, ratio 3/4-4/3), flips with probability 1/2 that swap "left"/"right" in the caption,
RandAugment's level-7 magnitudes, and determinism per (seed, epoch, sample), whatever the
number of DataLoader workers."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.trainer.shard_data import make_shards, shard_config
from trainer.data.augment import OPS, augment, crop_box, flips, swap_left_right
from trainer.loop import Trainer, train


def test_left_and_right_swap_as_whole_words_keeping_case() -> None:
    assert swap_left_right("a cat left of a dog, Right of a box, LEFT") == \
        "a cat right of a dog, Left of a box, RIGHT"
    assert swap_left_right("leftover bright rightmost") == "leftover bright rightmost"


def _expected_scale(side_ratio: float = 1.0) -> float:
    """E[scale] of torchvision's rule on a square image, by quadrature of its definition:
    s ~ U(0.5, 1), log r ~ U(log 3/4, log 4/3), kept when the box fits (s*r <= 1 and
    s/r <= 1), ten tries, else the whole image (s = 1)."""
    s = np.linspace(0.5, 1, 2001)[:, None]
    r = np.exp(np.linspace(math.log(3 / 4), math.log(4 / 3), 2001))[None, :]
    fits = (s * r <= side_ratio) & (s / r <= side_ratio)
    p = fits.mean()
    kept = float((s * fits).sum() / fits.sum())
    miss = (1 - p) ** 10
    return kept * (1 - miss) + 1.0 * miss


def test_crop_boxes_follow_random_resized_crops_law() -> None:
    rng = random.Random(0)
    scales, ratios = [], []
    for _ in range(4000):
        left, top, w, h = crop_box(100, 100, rng)
        assert left >= 0 and left + w <= 100 and top >= 0 and top + h <= 100
        scales.append(w * h / 100**2)
        ratios.append(w / h)
    # rounding to whole pixels moves scale and ratio by about one pixel's worth
    assert min(scales) >= 0.48 and max(scales) <= 1.0
    assert min(ratios) >= 0.73 and max(ratios) <= 4 / 3 + 0.03
    assert float(np.mean(scales)) == pytest.approx(_expected_scale(), abs=0.012)


def test_flips_are_a_fair_coin_per_sample_and_epoch() -> None:
    draws = [flips(7, 0, s) for s in range(4000)]
    assert abs(sum(draws) - 2000) < 4 * math.sqrt(1000)  # 4 sd of Binomial(4000, 1/2)
    assert draws == [flips(7, 0, s) for s in range(4000)]
    assert draws != [flips(7, 1, s) for s in range(4000)]


def test_randaugment_ops_keep_the_size_and_have_albefs_magnitudes() -> None:
    im = Image.new("RGB", (32, 24), (100, 100, 100))
    for name, op in OPS.items():
        out = op(im, random.Random(0))
        assert out.size == im.size and out.mode == "RGB", name
    assert OPS["Identity"](im, random.Random(0)) is im
    # enhance factor at level 7: 7/10 * 1.8 + 0.1 = 1.36
    assert OPS["Brightness"](im, random.Random(0)).getpixel((5, 5)) == (136, 136, 136)
    # translate by 7 px (7/10 of 10): a column of grey fill appears on one side
    shifted = np.asarray(OPS["TranslateX"](Image.new("RGB", (32, 24), (0, 0, 0)),
                                           random.Random(0)))
    grey = (shifted == 128).all(axis=(0, 2))
    assert grey.sum() == 7 and (grey[:7].all() or grey[-7:].all())


def test_augment_is_deterministic_per_seed_epoch_and_sample() -> None:
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8))
    a = np.asarray(augment(im, 32, 1, 0, 5))
    assert a.shape == (32, 32, 3)
    assert np.array_equal(a, np.asarray(augment(im, 32, 1, 0, 5)))
    assert not np.array_equal(a, np.asarray(augment(im, 32, 1, 1, 5)))
    assert not np.array_equal(a, np.asarray(augment(im, 32, 2, 0, 5)))


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("aug")
    return tmp, make_shards(tmp)


def test_flipped_pairs_train_on_the_swapped_caption(shards) -> None:
    tmp, patterns = shards
    trainer = Trainer(shard_config(tmp, patterns, **{"data.augment": True}), 0,
                      checkpoint_dir=None)
    feeder, split = trainer.feeder, trainer.train_split
    sided = [i for i, c in enumerate(split.captions) if swap_left_right(c) != c]
    assert sided, "the benchmark has captions saying left or right"
    rows = torch.tensor(sided)
    ids, mask = feeder.text(rows, epoch=0)
    for k, i in enumerate(sided):
        caption = swap_left_right(split.captions[i]) if flips(0, 0, i) else split.captions[i]
        want, want_mask = trainer.bench.tokenize([caption])
        assert torch.equal(ids[k], want[0]) and torch.equal(mask[k], want_mask[0])


def test_augmented_training_is_the_same_with_workers_and_differs_from_plain(shards) -> None:
    tmp, patterns = shards
    fast = {"schedule.steps": 6, "runtime.checkpoint_every": 6, "runtime.log_every": 2}
    plain = train(shard_config(tmp, patterns, **fast), seed=1)
    aug = train(shard_config(tmp, patterns, **fast, **{"data.augment": True}), seed=1)
    aug_workers = train(shard_config(tmp, patterns, **fast, **{
        "data.augment": True, "data.num_workers": 2}), seed=1)
    assert aug.history["loss"] == aug_workers.history["loss"]
    assert aug.metrics == aug_workers.metrics
    assert aug.history["loss"] != plain.history["loss"]
