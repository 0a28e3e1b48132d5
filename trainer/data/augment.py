"""ALBEF's train-time augmentation on PIL images, deterministic per (seed, epoch, sample).

RandomResizedCrop (scale 0.5-1.0, ratio 3/4-4/3, bicubic; torchvision's sampling: ten tries,
then a centre crop), a horizontal flip with probability 0.5, then ALBEF's RandomAugment(2, 7):
two ops drawn with replacement from Identity, AutoContrast, Equalize, Brightness, Sharpness,
ShearX, ShearY, TranslateX, TranslateY, Rotate, each applied with probability 0.5, at level 7
of 10 (enhance factor level/10*1.8+0.1; shear level/10*0.3; translate level/10*10 px; rotate
level/10*30 degrees; geometric ops with a random sign, filling with grey 128), as in ALBEF's
``dataset/randaugment.py``. torchvision does not install beside this torch, so it is written
here with PIL.

The flip is drawn from its own stream (``flips``) so that the training process, which holds the
tokenised captions, knows which captions to swap "left" and "right" in without decoding a pixel.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable

from PIL import Image, ImageEnhance, ImageOps

from trainer.streams import derive_seed

SCALE = (0.5, 1.0)
RATIO = (3 / 4, 4 / 3)
OPS_PER_IMAGE, LEVEL, MAX_LEVEL = 2, 7, 10
FILL = (128, 128, 128)
TRANSLATE_PX = 10.0


def _rng(seed: int, epoch: int, sample: int, what: str) -> random.Random:
    return random.Random(derive_seed(seed, f"augment.{what}:{epoch}:{sample}"))


def flips(seed: int, epoch: int, sample: int) -> bool:
    """Whether pair ``sample`` is flipped in ``epoch`` (probability 0.5)."""
    return _rng(seed, epoch, sample, "flip").random() < 0.5


_SWAP = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def swap_left_right(caption: str) -> str:
    """"left" <-> "right" as whole words, keeping their case (LAVIS's NLVR flip)."""
    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other
    return _SWAP.sub(swap, caption)


def crop_box(width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: (left, top, w, h)."""
    area = width * height
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif in_ratio > RATIO[1]:
        w, h = int(round(height * RATIO[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def _signed(value: float, rng: random.Random) -> float:
    return -value if rng.random() > 0.5 else value


def _enhance(kind: Callable[[Image.Image], ImageEnhance._Enhance]) -> Callable[
        [Image.Image, random.Random], Image.Image]:
    return lambda im, rng: kind(im).enhance(LEVEL / MAX_LEVEL * 1.8 + 0.1)


def _shear(axis: int) -> Callable[[Image.Image, random.Random], Image.Image]:
    def op(im: Image.Image, rng: random.Random) -> Image.Image:
        s = _signed(LEVEL / MAX_LEVEL * 0.3, rng)
        data = (1, s, 0, 0, 1, 0) if axis == 0 else (1, 0, 0, s, 1, 0)
        return im.transform(im.size, Image.Transform.AFFINE, data,
                            Image.Resampling.BILINEAR, fillcolor=FILL)
    return op


def _translate(axis: int) -> Callable[[Image.Image, random.Random], Image.Image]:
    def op(im: Image.Image, rng: random.Random) -> Image.Image:
        t = _signed(LEVEL / MAX_LEVEL * TRANSLATE_PX, rng)
        data = (1, 0, t, 0, 1, 0) if axis == 0 else (1, 0, 0, 0, 1, t)
        return im.transform(im.size, Image.Transform.AFFINE, data,
                            Image.Resampling.BILINEAR, fillcolor=FILL)
    return op


def _rotate(im: Image.Image, rng: random.Random) -> Image.Image:
    return im.rotate(_signed(LEVEL / MAX_LEVEL * 30.0, rng), Image.Resampling.BILINEAR,
                     fillcolor=FILL)


OPS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "Identity": lambda im, rng: im,
    "AutoContrast": lambda im, rng: ImageOps.autocontrast(im),
    "Equalize": lambda im, rng: ImageOps.equalize(im),
    "Brightness": _enhance(ImageEnhance.Brightness),
    "Sharpness": _enhance(ImageEnhance.Sharpness),
    "ShearX": _shear(0),
    "ShearY": _shear(1),
    "TranslateX": _translate(0),
    "TranslateY": _translate(1),
    "Rotate": _rotate,
}
"""ALBEF's list, in its order."""


def rand_augment(im: Image.Image, rng: random.Random) -> Image.Image:
    names = list(OPS)
    for name in [rng.choice(names) for _ in range(OPS_PER_IMAGE)]:
        if rng.random() > 0.5:
            continue
        im = OPS[name](im, rng)
    return im


def augment(im: Image.Image, size: int, seed: int, epoch: int, sample: int) -> Image.Image:
    """Crop+resize to ``size`` x ``size``, flip (``flips``), RandAugment: ALBEF's order."""
    rng = _rng(seed, epoch, sample, "pixels")
    left, top, w, h = crop_box(im.width, im.height, rng)
    im = im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + w, top + h))
    if flips(seed, epoch, sample):
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return rand_augment(im.convert("RGB"), rng)
