"""Small builders shared by the trainer tests: a tiny config and a random batch, no data files."""

from __future__ import annotations

import torch
from torch import nn

from trainer.config import TrainConfig, build_config
from trainer.model.forward import Batch, VocabInfo

VOCAB = VocabInfo(size=60, pad_id=0, cls_id=2, sep_id=3, mask_id=4, unk_id=1)


def tiny(**dotted: object) -> TrainConfig:
    return build_config("tiny", dotted={"data.image_size": 32, "init.warm_start": False, **dotted})


def random_batch(b: int = 6, length: int = 12, image_ids: list[int] | None = None) -> Batch:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB.size, (b, length), generator=g)
    ids[:, 0] = VOCAB.cls_id
    ids[:, -3] = VOCAB.sep_id
    ids[:, -2:] = VOCAB.pad_id
    mask = (ids != VOCAB.pad_id).long()
    img = torch.tensor(image_ids if image_ids is not None else list(range(b)))
    return Batch(torch.randn(b, 3, 32, 32, generator=g), ids, mask, img)


def count_calls(modules: dict[str, nn.Module]) -> dict[str, int]:
    """Forward-call counts per name, filled in as the modules run (compute-cost tests)."""
    counts: dict[str, int] = {}
    for name, module in modules.items():
        module.register_forward_hook(
            lambda *_, n=name: counts.__setitem__(n, counts.get(n, 0) + 1)
        )
    return counts
