"""The one interface every pretraining objective implements, and the registry of implementations.

An ablation toggles an objective by name (``objectives.<name>.enabled``). Adding an objective is
its settings class in ``trainer.config.objectives`` (torch-free, so specs validate without
torch) and one module here: a loss and ``@register("<name>")``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

from torch import Tensor, nn

from trainer.config.objectives import OBJECTIVE_CONFIGS, ObjectiveConfig

if TYPE_CHECKING:
    from trainer.config import TrainConfig
    from trainer.model.forward import StepContext, VocabInfo


@dataclass
class ObjectiveEnv:
    """What an objective may read when it builds its heads."""

    train: TrainConfig
    vocab: VocabInfo
    text_dim: int
    vision_dim: int


@dataclass
class ObjectiveOutput:
    """One objective's contribution to a training step."""

    loss: Tensor
    """The weighted-sum input: the term before ``weight`` is applied."""
    logs: dict[str, float]
    """Extra scalars worth plotting (accuracies, sub-terms)."""


class Objective(nn.Module):
    """A loss over a shared, lazily computed step context.

    Objectives own their heads and buffers (ITM head, MLM head, queues); what several objectives
    need (encoder outputs, projected features) is computed once by the ``StepContext`` and only
    if some enabled objective asks for it, so an objective that is off costs nothing.
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[ObjectiveConfig]]
    needs_momentum_model: bool = False
    """True when this objective reads the EMA model (queue keys, distillation targets)."""
    needs_patch_histograms: bool = False
    """True when this objective reads ``batch.patch_histograms`` (the loop fills them only
    then)."""

    def __init__(self, cfg: ObjectiveConfig, env: ObjectiveEnv) -> None:
        super().__init__()
        self.cfg = cfg
        """``objectives.<name>``: an instance of the settings class registered under this
        objective's name, which each implementation declares as its type (``cfg: ITCConfig``)."""
        self.env = env

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, EMA copy) pairs this objective owns, updated with the model's momentum."""
        return []

    def forward(self, ctx: StepContext) -> ObjectiveOutput:  # pragma: no cover - interface
        raise NotImplementedError


ObjectiveT = TypeVar("ObjectiveT", bound=Objective)

OBJECTIVES: dict[str, type[Objective]] = {}


def register(name: str) -> Callable[[type[ObjectiveT]], type[ObjectiveT]]:
    """Class decorator: the implementation of ``objectives.<name>``, whose settings class is
    declared (torch-free) in ``trainer.config.objectives``."""

    def wrap(cls: type[ObjectiveT]) -> type[ObjectiveT]:
        if name not in OBJECTIVE_CONFIGS:
            raise ValueError(
                f"objective {name!r} has no settings class in trainer.config.objectives"
            )
        if name in OBJECTIVES:
            raise ValueError(f"objective {name!r} registered twice")
        cls.name = name
        cls.config_cls = OBJECTIVE_CONFIGS[name]
        OBJECTIVES[name] = cls
        return cls

    return wrap


def as_objective(module: nn.Module) -> Objective:
    """``module`` typed as the ``Objective`` it is (``nn.ModuleDict`` types its values as
    ``nn.Module``)."""
    if not isinstance(module, Objective):
        raise TypeError(f"{type(module).__name__} is not an Objective")
    return module


def lookup(objectives: Mapping[str, nn.Module], cls: type[ObjectiveT]) -> ObjectiveT | None:
    """The enabled objective that ``cls`` implements, typed as ``cls``; None when it is off."""
    found = objectives.get(cls.name)
    if found is None:
        return None
    if isinstance(found, cls):
        return found
    raise TypeError(f"objective {cls.name!r} is a {type(found).__name__}, not {cls.__name__}")


def require(objectives: Mapping[str, nn.Module], cls: type[ObjectiveT]) -> ObjectiveT:
    """As ``lookup``, for an objective that must be on (a KeyError names it otherwise)."""
    found = lookup(objectives, cls)
    if found is None:
        raise KeyError(cls.name)
    return found
