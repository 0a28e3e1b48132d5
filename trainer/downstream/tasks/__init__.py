"""Downstream tasks generated from the `shapes` scene generator (VQA, NLVR-style, SNLI-VE-style
entailment, RefCOCO-style grounding), with exact labels from the scene graph and the
three-valued facts, as pure, cached functions of their settings. See ``load.load_task``."""

from trainer.downstream.tasks.load import TASKS, describe, generate, load_task
from trainer.downstream.tasks.settings import (
    GroundingSettings,
    NLVRSettings,
    TaskSettings,
    VESettings,
    VQASettings,
)
from trainer.downstream.tasks.types import (
    GroundingItem,
    NLVRItem,
    TaskSplit,
    VEItem,
    VQAItem,
    xywh,
)

__all__ = [
    "TASKS",
    "GroundingItem",
    "GroundingSettings",
    "NLVRItem",
    "NLVRSettings",
    "TaskSettings",
    "TaskSplit",
    "VEItem",
    "VESettings",
    "VQAItem",
    "VQASettings",
    "describe",
    "generate",
    "load_task",
    "xywh",
]
