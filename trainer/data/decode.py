"""Image bytes to RGB pixels, and the plain (un-augmented) resize every split uses.

JPEGs are decoded with PIL's draft mode: libjpeg scales by 1/2, 1/4 or 1/8 while decoding (in
the DCT), never below the size asked for, so a 640 px photo bound for 256 px decodes at 320 px
(``bench/data.py`` measures it against a plain decode). The result is resized with bicubic
filtering afterwards, as before, so the image seen is the same shape of thing either way.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image

JPEG_DRAFT = True
"""Decode JPEGs at a reduced scale when the target is small enough (PIL ``draft``)."""


class BadImage(ValueError):
    """Bytes that are not a readable image (corrupt, truncated, not an image at all)."""


def open_rgb(data: bytes, min_side: int | None = None, *, draft: bool = JPEG_DRAFT) -> Image.Image:
    """The decoded RGB image of ``data``; with ``min_side``, a JPEG may be decoded at a reduced
    scale whose shorter side is still at least ``min_side``. BadImage when it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if draft and min_side and im.format == "JPEG":
                w, h = im.size
                scale = min(w, h) / min_side
                if scale >= 2:
                    im.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
            im.load()  # the whole decode happens here: a truncated file fails now, not later
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as err:
        raise BadImage(str(err) or type(err).__name__) from err


def to_tensor(im: Image.Image) -> torch.Tensor:
    """uint8 ``[3, H, W]`` of an RGB image."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


def squash(im: Image.Image, size: int) -> torch.Tensor:
    """``im`` resized (squashed) to ``size`` x ``size``, bicubic: the evaluation transform."""
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    return to_tensor(im)


def decode_square(data: bytes, size: int) -> torch.Tensor:
    """uint8 ``[3, size, size]`` of image bytes (BadImage when unreadable)."""
    return squash(open_rgb(data, size), size)
