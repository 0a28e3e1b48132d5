"""TrainConfig: every knob of one pretraining trial, validated, canonical and hashable.

A trial is identified by the hash of its resolved config (plus seed and code fingerprint), so the
config must be complete (no hidden defaults elsewhere), canonical (same values, same JSON) and
strict (an unknown key is an error naming it, never silently ignored).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from trainer.config.errors import ConfigError, describe_validation_error
from trainer.config.objectives import OBJECTIVE_NAMES, ObjectivesConfig
from trainer.config.overrides import deep_merge, flatten, parse_override, set_path
from trainer.config.presets import PRESETS
from trainer.config.sections import (
    DataConfig,
    EvalConfig,
    InitConfig,
    ModelConfig,
    OptimConfig,
    RuntimeConfig,
    ScheduleConfig,
    Section,
)


class TrainConfig(Section):
    """The complete, resolved configuration of one pretraining trial."""

    preset: str | None = Field(default=None, description="the preset this was built from")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    init: InitConfig = InitConfig()
    objectives: ObjectivesConfig = ObjectivesConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    eval: EvalConfig = EvalConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @model_validator(mode="after")
    def _one_objective_on(self) -> TrainConfig:
        if not self.enabled_objectives():
            raise ValueError(
                "objectives: at least one objective must be enabled (one of "
                + ", ".join(OBJECTIVE_NAMES)
                + ")"
            )
        return self

    @model_validator(mode="after")
    def _warm_start_supported(self) -> TrainConfig:
        """Refused at validation (a 4xx at POST), not when a worker reaches it."""
        if not self.init.warm_start:
            return self
        if self.data.dataset != "shapes":
            raise ValueError(
                "init.warm_start: needs the shapes benchmark's patch labels; for real data set "
                "it false and load pretrained encoders (model.vision/text.pretrained)"
            )
        if self.model.vision.pretrained or self.model.text.pretrained:
            raise ValueError(
                "init.warm_start: the encoders already load pretrained weights; set it false"
            )
        return self

    @model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        s = self.schedule
        if s.budget_samples is not None and s.budget_flops is not None:
            raise ValueError("schedule.budget_flops: give one budget, samples or FLOPs, not both")
        if s.budget_samples is not None and s.budget_samples < self.samples_per_step:
            raise ValueError(
                f"schedule.budget_samples: {s.budget_samples} is less than one step "
                f"({self.samples_per_step} samples: data.batch_size x optim.accumulation_steps)"
            )
        return self

    @property
    def samples_per_step(self) -> int:
        return self.data.batch_size * self.optim.accumulation_steps

    @property
    def planned_steps(self) -> int:
        """Optimizer steps of the run, or their upper bound under a FLOPs budget (the number
        is known once the trial has measured its step's FLOPs)."""
        if self.schedule.budget_samples is not None:
            return self.schedule.budget_samples // self.samples_per_step
        return self.schedule.steps

    def enabled_objectives(self) -> list[str]:
        return [n for n in OBJECTIVE_NAMES if getattr(self.objectives, n).enabled]

    def objective(self, name: str) -> Any:
        return getattr(self.objectives, name)

    # ---- canonical form -------------------------------------------------------------------
    def canonical_json(self) -> str:
        """Sorted, compact JSON of every value that can change a trial's result."""
        data = self.model_dump(mode="json")
        for section, key in RESULT_NEUTRAL_FIELDS + EVALUATION_FIELDS:
            data[section].pop(key, None)
        for path, default in ADDED_WITH_DEFAULT.items():
            *parents, key = path.split(".")
            node = data
            for part in parents:
                node = node[part]
            if node.get(key) == default:
                del node[key]
        data.pop("preset", None)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def config_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def flat(self) -> dict[str, Any]:
        """Dotted-key view, e.g. ``{"objectives.itc.enabled": True}`` (MLflow params)."""
        return flatten(self.model_dump(mode="json"))


RESULT_NEUTRAL_FIELDS = [
    ("runtime", "output_dir"),
    ("runtime", "log_every"),
    ("runtime", "checkpoint_every"),
    ("data", "num_workers"),  # order and augmentation depend on (seed, epoch, sample) only
    ("data", "prefetch_factor"),
]
"""Fields that never change the numbers a trial produces, so they stay out of its hash."""

EVALUATION_FIELDS = [("eval", "downstream")]
"""What is evaluated after pretraining: each (trial, task settings) evaluation has its own key
(``trainer.downstream.run.evaluation_key``), so asking for another task keeps the trial's."""

ADDED_WITH_DEFAULT: dict[str, Any] = {
    "model.text.fusion_readout": "cls",
    "init.fusion": False,
    "model.text.cross_attention_init": "bert",
    "data.train_shards": None,
    "data.val_shards": None,
    "data.test_shards": None,
    "data.augment": False,
    "data.max_bad_fraction": 0.01,
}
"""Fields added after configs were hashed, and the default that does what the code did before
them: at that value they stay out of the canonical JSON, so existing configs keep their hash
(and a stored trial's key its meaning)."""


def build_config(
    preset: str | None = "tiny",
    overrides: dict[str, Any] | None = None,
    dotted: dict[str, Any] | None = None,
) -> TrainConfig:
    """Preset, then a nested override dict, then dotted ``a.b: value`` overrides, validated.

    Raises ``ConfigError`` naming the first bad field.
    """
    if preset is not None and preset not in PRESETS:
        raise ConfigError("preset", f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    tree: dict[str, Any] = copy.deepcopy(PRESETS[preset]) if preset else {}
    if overrides:
        tree = deep_merge(tree, overrides)
    for path, value in (dotted or {}).items():
        tree = set_path(tree, path, value)
    tree["preset"] = preset
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as err:
        first = describe_validation_error(err)[0]
        raise ConfigError(first["field"], first["reason"]) from err


def load_config(source: str, sets: list[str] | None = None) -> TrainConfig:
    """A preset name or a YAML/JSON file (which may name a ``preset``), plus ``--set`` items.

    A file's own keys override its preset's; ``--set`` items override both.
    """
    dotted = dict(parse_override(item) for item in (sets or []))
    if source in PRESETS:
        return build_config(source, dotted=dotted)
    path = Path(source)
    if not path.exists():
        raise ConfigError(
            "config", f"{source!r} is neither a preset ({', '.join(PRESETS)}) nor a file"
        )
    tree = yaml.safe_load(path.read_text()) or {}
    if not isinstance(tree, dict):
        raise ConfigError("config", f"{source} must hold a mapping")
    preset = tree.pop("preset", None)
    return build_config(preset, overrides=tree, dotted=dotted)
