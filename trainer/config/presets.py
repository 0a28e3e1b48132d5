"""The presets, as data: what ``preset: tiny | small | base`` starts a config from.

Each preset is a nested override tree over the section defaults; ``build_config`` merges a spec's
overrides on top and validates the result."""

from __future__ import annotations

from typing import Any


def _objectives(**on: dict[str, Any]) -> dict[str, Any]:
    return {name: {"enabled": True, **values} for name, values in on.items()}


PRESETS: dict[str, dict[str, Any]] = {
    # Trains on 2 CPU cores in a few minutes and still separates ablation arms on `shapes`.
    # Mean pooling for the ITC features of both encoders (random init: [CLS] pooling left ITC
    # at chance for 100-270 steps and gave 25.9 +- 18.6 mean recall over 5 seeds on the
    # stability bench; mean pooling 59.0 +- 1.8; bench/results/stability.md). Encoders start
    # from the shared warm start, as the papers' start from pretrained ones (62.5 +- 2.0).
    # No ITC queue: from random init the [CLS] features of ViT/BERT barely differ across
    # inputs, and keys from an EMA encoder then carry no signal, so ITC with a queue collapses
    # to chance here (measured; see docs/architecture.md). ALBEF starts from pretrained
    # encoders; `small` and `base` keep the queue. It stays one switch away for ablations.
    # Cross-attention at LeCun's scale: under BERT's N(0, 0.02) ITM alone never left its prior
    # in 3 of 5 seeds (bench/results/fusion_stability.md); at N(0, 1/fan_in) all 5 left it by
    # step 81-184 of 400.
    "tiny": {
        "data": {"image_size": 32, "num_train_images": 2000, "num_val_images": 100,
                 "num_test_images": 200, "batch_size": 64, "vocab_size": 400},
        "model": {
            "vision": {"patch_size": 8, "hidden_size": 64, "num_layers": 2, "num_heads": 2,
                       "intermediate_size": 256, "pooling": "mean"},
            "text": {"hidden_size": 64, "num_text_layers": 2, "num_fusion_layers": 2,
                     "num_heads": 2, "intermediate_size": 256, "pooling": "mean",
                     "cross_attention_init": "lecun"},
            "embed_dim": 64,
        },
        "objectives": _objectives(
            itc={"queue": False, "queue_size": 1024, "distill": True},
            itm={"hard_negatives": True},
            mlm={"distill": True},
        ),
        "init": {"warm_start": True, "steps": 300},
        "optim": {"lr": 1e-3},
        "schedule": {"steps": 600, "warmup_steps": 60},
        "eval": {"rerank_k": 16},
    },
    # A laptop-GPU / many-core size: long enough to see MoD and queue effects.
    "small": {
        "data": {"image_size": 64, "num_train_images": 20000, "num_val_images": 500,
                 "num_test_images": 1000, "batch_size": 64, "vocab_size": 1000},
        "model": {
            "vision": {"patch_size": 8, "hidden_size": 256, "num_layers": 4, "num_heads": 4,
                       "intermediate_size": 1024, "pooling": "mean"},
            "text": {"hidden_size": 256, "num_text_layers": 3, "num_fusion_layers": 3,
                     "num_heads": 4, "intermediate_size": 1024, "pooling": "mean"},
            "embed_dim": 128,
        },
        "objectives": _objectives(
            itc={"queue": True, "queue_size": 8192, "distill": True},
            itm={"hard_negatives": True},
            mlm={"distill": True},
        ),
        "optim": {"lr": 3e-4},
        "schedule": {"steps": 3000, "warmup_steps": 200},
        "eval": {"rerank_k": 32},
    },
    # ALBEF's pretraining setup: ViT-B/16 at 256 px, BERT-base split 6 text + 6 fusion layers.
    "base": {
        "data": {"image_size": 256, "max_text_len": 30, "batch_size": 64, "vocab_size": 30522,
                 "num_train_images": 100000, "num_val_images": 1000, "num_test_images": 5000},
        "model": {
            "vision": {"patch_size": 16, "hidden_size": 768, "num_layers": 12, "num_heads": 12,
                       "intermediate_size": 3072},
            "text": {"hidden_size": 768, "num_text_layers": 6, "num_fusion_layers": 6,
                     "num_heads": 12, "intermediate_size": 3072},
            "embed_dim": 256,
            "momentum": 0.995,
        },
        "objectives": _objectives(
            itc={"queue": True, "queue_size": 65536, "distill": True, "alpha": 0.4,
                 "temp": 0.07},
            itm={"hard_negatives": True},
            mlm={"distill": True, "alpha": 0.4, "mask_prob": 0.15},
        ),
        "optim": {"lr": 1e-4, "weight_decay": 0.02},
        "schedule": {"steps": 100000, "warmup_steps": 1000},
        "eval": {"rerank_k": 128},
    },
}
