"""Each objective's settings and the config-only registry ``TrainConfig`` is built from.

No torch here (as LAVIS keeps its registry free of imports): the controller and the Ray job's
driver validate specs without loading the models. The implementations live in
``trainer.objectives`` and register against these names; a test checks both lists agree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainer.config.sections import PathStr


class ObjectiveConfig(BaseModel):
    """Settings every objective shares: a switch and a loss weight."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    enabled: bool = False
    weight: float = Field(default=1.0, ge=0.0, description="multiplier of this loss term")


class ITCConfig(ObjectiveConfig):
    temp: float = Field(default=0.07, gt=0.0, description="initial softmax temperature")
    learnable_temp: bool = True
    temp_min: float = Field(default=0.001, gt=0.0)
    temp_max: float = Field(default=0.5, gt=0.0)
    queue: bool = False
    queue_size: int = Field(default=65536, ge=1)
    distill: bool = False
    alpha: float = Field(default=0.4, ge=0.0, le=1.0, description="weight of momentum targets")

    @model_validator(mode="after")
    def _temp_range(self) -> ITCConfig:
        if not self.temp_min <= self.temp <= self.temp_max:
            raise ValueError("temp: must lie within [temp_min, temp_max]")
        return self


class ITMConfig(ObjectiveConfig):
    hard_negatives: bool = False
    hard_negative_temp: float = Field(
        default=0.07, gt=0.0, description="softmax temperature for sampling when ITC is off"
    )


class MLMConfig(ObjectiveConfig):
    mask_prob: float = Field(default=0.15, gt=0.0, lt=1.0)
    mask_token_frac: float = Field(default=0.8, ge=0.0, le=1.0, description="-> [MASK]")
    random_token_frac: float = Field(default=0.1, ge=0.0, le=1.0, description="-> random token")
    distill: bool = False
    alpha: float = Field(default=0.4, ge=0.0, le=1.0, description="weight of momentum targets")

    @model_validator(mode="after")
    def _fractions(self) -> MLMConfig:
        if self.mask_token_frac + self.random_token_frac > 1.0:
            raise ValueError(
                "random_token_frac: mask_token_frac + random_token_frac must not exceed 1"
            )
        return self


class MPMConfig(ObjectiveConfig):
    mask_prob: float = Field(default=0.15, gt=0.0, lt=1.0, description="fraction of patches")
    conditional_masking: bool = Field(
        default=True, description="mask only the image in these passes (text stays clean)"
    )


class MRFRConfig(MPMConfig):
    mask_token: Literal["learned", "zero"] = Field(
        default="learned", description="what replaces a masked patch embedding"
    )


class MRCKLConfig(MPMConfig):
    labels: Literal["shape", "colour", "both"] = Field(
        default="both", description="`shapes` label channels to predict"
    )
    target: Literal["distribution", "label"] = Field(
        default="distribution",
        description="`shapes` targets: each patch's label distribution (MRC-kl) or the one-hot "
        "of its label (MRC, cross-entropy)",
    )
    min_foreground: float | None = Field(
        default=0.25, gt=0.0, le=1.0,
        description="target label: a foreground label covering this share of a patch labels it "
        "(None: majority)",
    )
    teacher: PathStr | None = Field(
        default=None, description="TorchScript teacher: images -> per-patch logits [B,P,K]"
    )
    teacher_classes: int | None = Field(default=None, ge=2, description="K of the teacher")


class WRAConfig(ObjectiveConfig):
    beta: float = Field(default=0.5, gt=0.0, description="IPOT proximal-point weight")
    iterations: int = Field(default=50, ge=1, description="IPOT outer iterations")
    k: int = Field(default=1, ge=1, description="inner Sinkhorn steps per iteration")
    weight: float = Field(default=0.1, ge=0.0, description="UNITER weights OT by 0.1 on ITM")


Task = Literal["itm", "mlm"]
"""A task VILLA perturbs."""


class VILLAConfig(ObjectiveConfig):
    modality: Literal["image", "text", "alternate"] = "alternate"
    tasks: list[Task] | None = Field(
        default=None, min_length=1, max_length=2,
        description="tasks to perturb (None: every enabled one of itm, mlm)",
    )
    adv_steps: int = Field(default=2, ge=1, description="K: projected gradient ascent steps")
    epsilon: float = Field(default=1.0, gt=0.0, description="L2 bound of each token's delta")
    adv_lr: float = Field(default=0.1, gt=0.0, description="ascent step size")
    init_mag: float = Field(default=0.01, ge=0.0, description="scale of the random start")
    kl_weight: float = Field(default=1.0, ge=0.0, description="weight of the consistency KL")
    epsilon_scale: Literal["absolute", "embedding_norm"] = Field(
        default="absolute",
        description="embedding_norm: epsilon, adv_lr and init_mag are fractions of each "
                    "token's embedding norm",
    )


class IAISConfig(ObjectiveConfig):
    variant: Literal["singular", "distributed"] = Field(
        default="singular", description="how visual attention is projected onto the words"
    )



class ObjectivesConfig(BaseModel):
    """One field per objective, typed by its own settings class (``objectives.itc.queue``).
    Adding an objective: its settings class above, a field here, its implementation
    registered under the field's name in ``trainer.objectives``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    iais: IAISConfig = Field(default_factory=IAISConfig)
    itc: ITCConfig = Field(default_factory=ITCConfig)
    itm: ITMConfig = Field(default_factory=ITMConfig)
    mlm: MLMConfig = Field(default_factory=MLMConfig)
    mrc_kl: MRCKLConfig = Field(default_factory=MRCKLConfig)
    mrfr: MRFRConfig = Field(default_factory=MRFRConfig)
    villa: VILLAConfig = Field(default_factory=VILLAConfig)
    wra: WRAConfig = Field(default_factory=WRAConfig)


def _settings_classes() -> dict[str, type[ObjectiveConfig]]:
    out: dict[str, type[ObjectiveConfig]] = {}
    for name, field in ObjectivesConfig.model_fields.items():
        assert isinstance(field.annotation, type) and issubclass(field.annotation, ObjectiveConfig)
        out[name] = field.annotation
    return out


OBJECTIVE_CONFIGS: dict[str, type[ObjectiveConfig]] = _settings_classes()
"""Objective name (``objectives.<name>`` in a config) -> its settings class."""

OBJECTIVE_NAMES: list[str] = sorted(OBJECTIVE_CONFIGS)
