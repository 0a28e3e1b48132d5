"""Per-patch labels from the per-pixel label maps, for patch-level objectives."""

from __future__ import annotations

import torch


def patch_histograms(
    label_maps: torch.Tensor, patch_size: int, num_classes: int | None = None
) -> torch.Tensor:
    """Share of each label's pixels in each patch: ``[N, C, H, W]`` -> ``[N, C, P, K]`` float.

    Patches are row-major; each ``[..., :]`` row sums to 1. ``K`` is ``num_classes`` or, if
    None, the largest label present plus one. This is the patch's class distribution: the
    `shapes` counterpart of the detector's class distribution UNITER's MRC-kl distils.
    """
    n, c, h, w = label_maps.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"patch_size {patch_size} does not divide the {h}x{w} label maps")
    x = label_maps.long().reshape(n, c, h // patch_size, patch_size, w // patch_size, patch_size)
    x = x.permute(0, 1, 2, 4, 3, 5).reshape(n, c, -1, patch_size * patch_size)
    present = int(x.max().item()) + 1 if x.numel() else 1
    k = present if num_classes is None else num_classes
    if k < present:
        raise ValueError(f"num_classes {k} is below the largest label {present - 1} + 1")
    counts = torch.zeros(*x.shape[:3], k, dtype=torch.float32)
    counts.scatter_add_(-1, x, torch.ones_like(x, dtype=torch.float32))
    return counts / (patch_size * patch_size)


def labels_from_histograms(
    histograms: torch.Tensor, min_foreground: float | None = None
) -> torch.Tensor:
    """Majority label of each patch: ``[..., K]`` shares -> ``[...]`` long.

    Ties go to the smaller id (background first). With ``min_foreground`` set, the most
    frequent non-zero label wins instead whenever it covers at least that fraction of the patch
    (small objects rarely hold a majority of an 8x8 patch at 32 px).
    """
    out = histograms.argmax(-1)  # first maximum: the smallest id on ties
    if min_foreground is not None and histograms.shape[-1] > 1:
        fg = histograms[..., 1:].argmax(-1) + 1
        share = histograms.gather(-1, fg.unsqueeze(-1)).squeeze(-1)
        out = torch.where(share >= min_foreground, fg, out)
    return out


def patch_labels(
    label_maps: torch.Tensor, patch_size: int, min_foreground: float | None = None
) -> torch.Tensor:
    """Majority label of each patch: ``[N, C, H, W]`` -> ``[N, C, P]`` long (see
    ``labels_from_histograms`` for ties and ``min_foreground``)."""
    return labels_from_histograms(patch_histograms(label_maps, patch_size), min_foreground)
