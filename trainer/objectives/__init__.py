"""Pretraining objectives, one module each, registered by name.

Importing this package imports every module in it, so a new objective only needs its own file.
"""

import importlib
import pkgutil

from trainer.objectives.base import (
    OBJECTIVES,
    Objective,
    ObjectiveConfig,
    ObjectiveEnv,
    ObjectiveOutput,
    register,
)

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "OBJECTIVES",
    "Objective",
    "ObjectiveConfig",
    "ObjectiveEnv",
    "ObjectiveOutput",
    "register",
]
