"""Per-patch labels from the per-pixel label maps, for patch-level objectives."""

from __future__ import annotations

import torch


def patch_labels(
    label_maps: torch.Tensor, patch_size: int, min_foreground: float | None = None
) -> torch.Tensor:
    """Majority label of each patch: ``[N, C, H, W]`` -> ``[N, C, P]`` long, patches row-major.

    Ties go to the smaller id (background first). With ``min_foreground`` set, the most
    frequent non-zero label wins instead whenever it covers at least that fraction of the patch
    (small objects rarely hold a majority of an 8x8 patch at 32 px).
    """
    n, c, h, w = label_maps.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"patch_size {patch_size} does not divide the {h}x{w} label maps")
    x = label_maps.long().reshape(n, c, h // patch_size, patch_size, w // patch_size, patch_size)
    x = x.permute(0, 1, 2, 4, 3, 5).reshape(n, c, -1, patch_size * patch_size)
    k = int(x.max().item()) + 1 if x.numel() else 1
    counts = torch.stack([(x == v).sum(-1) for v in range(k)], dim=-1)  # [N, C, P, K]
    out = counts.argmax(-1)  # first maximum: the smallest id on ties
    if min_foreground is not None and k > 1:
        fg = counts[..., 1:].argmax(-1) + 1
        share = counts.gather(-1, fg.unsqueeze(-1)).squeeze(-1) / (patch_size * patch_size)
        out = torch.where(share >= min_foreground, fg, out)
    return out
