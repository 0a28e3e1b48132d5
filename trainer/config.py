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
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from trainer.objectives import OBJECTIVES


class Section(BaseModel):
    """Base of every config section: strict about unknown keys and types."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    dataset: Literal["shapes", "coco", "flickr30k", "imagefolder"] = "shapes"
    root: str | None = Field(
        default=None,
        description="shapes: cache directory (default .ablate/data); real data: folder of images "
        "and annotations",
    )
    annotations: str | None = Field(
        default=None, description="Karpathy-split JSON (coco/flickr30k) relative to root"
    )
    image_size: int = Field(default=32, ge=16, le=1024)
    num_train_images: int = Field(default=2000, ge=1)
    num_val_images: int = Field(default=100, ge=1)
    num_test_images: int = Field(default=200, ge=1)
    captions_per_image: int = Field(default=5, ge=1)
    min_objects: int = Field(default=1, ge=1)
    max_objects: int = Field(default=3, ge=1)
    caption_noise: float = Field(default=0.0, ge=0.0, le=1.0)
    benchmark_seed: int = Field(
        default=0, description="generates the benchmark; independent of the training seed"
    )
    max_text_len: int = Field(default=30, ge=4)
    vocab_size: int = Field(default=1000, ge=50, description="WordPiece vocabulary to train")
    tokenizer_path: str | None = None
    batch_size: int = Field(default=32, ge=2)

    @model_validator(mode="after")
    def _objects_range(self) -> DataConfig:
        if self.min_objects > self.max_objects:
            raise ValueError("min_objects: must not exceed max_objects")
        return self


class VisionConfig(Section):
    patch_size: int = Field(default=8, ge=1)
    hidden_size: int = Field(default=64, ge=8)
    num_layers: int = Field(default=2, ge=1)
    num_heads: int = Field(default=2, ge=1)
    intermediate_size: int = Field(default=256, ge=8)
    pretrained: str | None = Field(default=None, description="local transformers ViT checkpoint")
    pooling: Literal["cls", "mean"] = Field(
        default="cls",
        description="ITC feature: the [CLS] state (ALBEF) or the mean of the patch states",
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> VisionConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size: must be divisible by num_heads")
        return self


class TextConfig(Section):
    hidden_size: int = Field(default=64, ge=8)
    num_text_layers: int = Field(default=2, ge=1)
    num_fusion_layers: int = Field(default=2, ge=1)
    num_heads: int = Field(default=2, ge=1)
    intermediate_size: int = Field(default=256, ge=8)
    pretrained: str | None = Field(default=None, description="local transformers BERT checkpoint")
    pooling: Literal["cls", "mean"] = Field(
        default="cls",
        description="ITC feature: the [CLS] state (ALBEF) or the mean of the token states",
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> TextConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size: must be divisible by num_heads")
        return self


class MoMEConfig(Section):
    """VLMo's multiway transformer (``model.arch: mome``): ``num_layers`` blocks of shared
    self-attention with vision and language FFN experts; the top ``num_vl_layers`` also hold a
    vision-language expert used in fusion mode. Patch size comes from ``model.vision``."""

    hidden_size: int = Field(default=64, ge=8)
    num_layers: int = Field(default=4, ge=1)
    num_vl_layers: int = Field(default=2, ge=1, description="top layers with the VL-FFN expert")
    num_heads: int = Field(default=2, ge=1)
    intermediate_size: int = Field(default=256, ge=8)

    @model_validator(mode="after")
    def _shape(self) -> MoMEConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size: must be divisible by num_heads")
        if self.num_vl_layers > self.num_layers:
            raise ValueError("num_vl_layers: must not exceed num_layers")
        return self


class ModelConfig(Section):
    arch: Literal["albef", "mome"] = "albef"
    vision: VisionConfig = VisionConfig()
    text: TextConfig = TextConfig()
    mome: MoMEConfig = Field(
        default_factory=MoMEConfig, description="sizes of the multiway transformer (arch mome)"
    )
    embed_dim: int = Field(default=64, ge=2, description="ITC projection size")
    momentum: float = Field(default=0.995, ge=0.0, lt=1.0, description="EMA decay of the copies")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


def _objectives_model() -> type[BaseModel]:
    """One field per registered objective, typed by that objective's own config class."""
    fields: dict[str, Any] = {
        name: (cls.config_cls, cls.config_cls()) for name, cls in sorted(OBJECTIVES.items())
    }
    return create_model(
        "ObjectivesConfig",
        __config__=ConfigDict(extra="forbid", validate_assignment=True),
        **fields,
    )


ObjectivesConfig = _objectives_model()


class InitConfig(Section):
    """Where the encoders start. ``warm_start``: from a unimodal pretraining stage on the
    benchmark's own training split (the image encoder classifies each patch's shape and colour,
    the text encoder does MLM on the captions), shared by every arm and seed of an experiment,
    the way ALBEF, VILLA and VLMo start from pretrained DeiT/BERT/BEiT. Computed once per
    content key (data + encoder shapes + this recipe + code) and cached beside the data."""

    warm_start: bool = False
    steps: int = Field(default=300, ge=1, description="warm-start optimizer steps")
    lr: float = Field(default=1e-3, gt=0.0, description="warm-start peak learning rate")
    batch_size: int = Field(default=64, ge=2, description="images and captions per step")
    seed: int = Field(default=0, ge=0, description="the warm start's own seed (not the trial's)")


class OptimConfig(Section):
    lr: float = Field(default=1e-4, gt=0.0)
    weight_decay: float = Field(default=0.02, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0.0)
    grad_clip: float | None = Field(default=None, gt=0.0)
    accumulation_steps: int = Field(default=1, ge=1, description="micro-batches per step")


class ScheduleConfig(Section):
    steps: int = Field(default=300, ge=1, description="optimizer steps in the whole run")
    warmup_steps: int = Field(default=30, ge=0)
    min_lr_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    alpha_ramp_steps: int | None = Field(
        default=None, ge=0, description="distillation alpha ramp; None means one epoch"
    )


class EvalConfig(Section):
    every_steps: int | None = Field(default=None, ge=1, description="None: only at the end")
    split: Literal["val", "test"] = "test"
    rerank_k: int = Field(default=16, ge=1, description="ITC top-k candidates ITM re-ranks")
    batch_size: int = Field(default=256, ge=1)


class RuntimeConfig(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    threads: int | None = Field(default=None, ge=1, description="torch intra-op threads")
    checkpoint_every: int = Field(default=100, ge=1)
    log_every: int = Field(default=10, ge=1)
    output_dir: str = "runs"


class TrainConfig(Section):
    """The complete, resolved configuration of one pretraining trial."""

    preset: str | None = Field(default=None, description="the preset this was built from")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    init: InitConfig = InitConfig()
    objectives: ObjectivesConfig = ObjectivesConfig()  # type: ignore[valid-type]
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    eval: EvalConfig = EvalConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @model_validator(mode="after")
    def _one_objective_on(self) -> TrainConfig:
        if not self.enabled_objectives():
            raise ValueError(
                "objectives: at least one objective must be enabled (one of "
                + ", ".join(sorted(OBJECTIVES))
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

    def enabled_objectives(self) -> list[str]:
        return [n for n in sorted(OBJECTIVES) if getattr(self.objectives, n).enabled]

    def objective(self, name: str) -> Any:
        return getattr(self.objectives, name)

    # ---- canonical form -------------------------------------------------------------------
    def canonical_json(self) -> str:
        """Sorted, compact JSON of every value that can change a trial's result."""
        data = self.model_dump(mode="json")
        for section, key in RESULT_NEUTRAL_FIELDS:
            data[section].pop(key, None)
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
]
"""Fields that never change the numbers a trial produces, so they stay out of its hash."""


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


# ---- presets ------------------------------------------------------------------------------

def _objectives(**on: dict[str, Any]) -> dict[str, Any]:
    return {name: {"enabled": True, **values} for name, values in on.items()}


_ALBEF_OBJECTIVES = _objectives(
    itc={"queue": True, "distill": True},
    itm={"hard_negatives": True},
    mlm={"distill": True},
)

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
    "tiny": {
        "data": {"image_size": 32, "num_train_images": 2000, "num_val_images": 100,
                 "num_test_images": 200, "batch_size": 64, "vocab_size": 400},
        "model": {
            "vision": {"patch_size": 8, "hidden_size": 64, "num_layers": 2, "num_heads": 2,
                       "intermediate_size": 256, "pooling": "mean"},
            "text": {"hidden_size": 64, "num_text_layers": 2, "num_fusion_layers": 2,
                     "num_heads": 2, "intermediate_size": 256, "pooling": "mean"},
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


# ---- building and overriding -------------------------------------------------------------

def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> tuple[str, Any]:
    """``a.b=c`` -> ("a.b", c) with c parsed as YAML (so true/3/0.5/[1,2] get their types)."""
    if "=" not in item:
        raise ConfigError(item, "an override must look like section.key=value")
    path, raw = item.split("=", 1)
    path = path.strip()
    if not path:
        raise ConfigError(item, "an override needs a key before '='")
    return path, yaml.safe_load(raw) if raw.strip() else ""


def set_path(tree: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``tree`` with the dotted ``path`` set to ``value``."""
    out = copy.deepcopy(tree)
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value
    return out


class ConfigError(ValueError):
    """A config that cannot be built; ``field`` names where, the message says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def describe_validation_error(err: ValidationError) -> list[dict[str, str]]:
    """pydantic's errors as ``[{"field": "a.b", "reason": "..."}]``."""
    out = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        msg = e["msg"].removeprefix("Value error, ")
        # our validators say "field: reason" for the field inside the section they check
        head, sep, rest = msg.partition(": ")
        if sep and head.replace("_", "").replace(".", "").isalnum() and " " not in head:
            loc.append(head)
            msg = rest
        out.append({"field": ".".join(loc) or "<root>", "reason": msg})
    return out


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
