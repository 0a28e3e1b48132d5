"""What makes two downstream evaluations the same, importable without torch: the controller
records an evaluation it is asked for under this key before any worker computes it, and the
worker's result (``trainer.downstream.run``) comes back under the same key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from trainer.config import TrainConfig
from trainer.config.downstream import FINETUNED_TASKS

EVALUATION_VERSION = 1
"""Bump when what an evaluation computes changes without a change of its settings."""


def task_settings(cfg: TrainConfig, task: str) -> dict[str, Any]:
    """What decides a task's numbers besides the trunk: its data (at the trunk's image size;
    the cache directory left out) and its fine-tuning budget. ``{}`` for minimal pairs, which
    reads the trial's own test split; the fine-tuning budget alone for fine-tuned retrieval,
    which reads the trial's own data."""
    if task == "retrieval_ft":
        return cfg.eval.downstream.retrieval_ft.model_dump(mode="json")
    if task not in FINETUNED_TASKS:
        return {}
    settings = cfg.eval.downstream.task(task).model_dump(mode="json")
    settings["data"].pop("root", None)
    settings["data"]["image_size"] = cfg.data.image_size
    return settings


def evaluation_key(trial_key: str, task: str, cfg: TrainConfig) -> str:
    payload = json.dumps({"trial": trial_key, "task": task, "version": EVALUATION_VERSION,
                          "settings": task_settings(cfg, task)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]
