"""Downstream tasks generated from the `shapes` scene generator (VQA, NLVR-style, SNLI-VE-style
entailment, RefCOCO-style grounding), with exact labels from the scene graph and the
three-valued facts, as pure, cached functions of their settings. See ``load.load_task``.

Nothing is imported eagerly: ``settings`` is read by the trial config, which the controller
loads without torch, while the generators render images (and ``trainer.data`` loads torch).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "TASKS": "load", "describe": "load", "generate": "load", "load_task": "load",
    "GroundingSettings": "settings", "NLVRSettings": "settings", "TaskSettings": "settings",
    "VESettings": "settings", "VQASettings": "settings",
    "GroundingItem": "types", "NLVRItem": "types", "TaskSplit": "types", "VEItem": "types",
    "VQAItem": "types", "xywh": "types",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
