"""AblationSpec: what a POST may say, validated field by field (no torch, no I/O).

A spec says *what to compare*; the expansion says *which configs that means*. Expansion is a pure
function of the spec (no I/O, no clock, no randomness), so a dry run shows exactly what a real
submission would run, and two submissions of one spec make the same trials (and trial keys).

Designs (``design``):

- ``factorial``: every combination of every factor's levels; names ``ITC=on,HN=off``.
- ``leave_one_out``: ``full`` (every factor at its last, "on", level) plus one ``w/o X`` per
  factor with X at its first, "off", level. Levels between first and last are not used.
- ``add_one_in``: ``baseline`` (every factor at its first level), then the factors switched to
  their last level one at a time, cumulatively, in listed order: ``+ITC``, ``+ITC+HN`` ... (the
  shape of ALBEF Table 1 / UNITER Table 2).
- ``explicit``: the listed ``variants``, each a name and a set of dotted overrides.

A level is a plain value for the factor's ``path`` (labelled on/off for booleans, else its text),
or a mapping ``{name: ..., value: ...}`` / ``{name: ..., set: {dotted.path: value, ...}}`` when one
level switches several settings together (e.g. ``MoD`` = both distillation flags).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from service.specs.adaptive import AdaptiveSeeds, Stopping
from service.specs.resources import Resources
from service.specs.schema_rules import (
    EXAMPLE,
    LEVEL_VALUE_OR_SET,
    METRIC_NAME,
    PLAIN_LEVELS_NEED_PATH,
    PRESET_NAMES,
    VARIANTS_AS_MAPPING,
    OrPlainValue,
    design_inputs,
)
from trainer.metric_names import DOWNSTREAM_METRICS, RETRIEVAL_METRICS, is_trial_metric

DOWNSTREAM_NAMES = [n for names in DOWNSTREAM_METRICS.values() for n in names]

Design = Literal["factorial", "leave_one_out", "add_one_in", "explicit"]

MAX_SEEDS = 10_000
"""Most seeds a spec may list or count: checked before ``range(count)`` is built, so a count of
10**9 is refused in microseconds (it used to be materialised, and the controller OOM-killed).
The trial limit (``Settings.max_trials``, variants x seeds) is checked next, by ``expand``."""
SEED_BOUND = 2**31
"""Seeds lie in [0, 2**31): what ``torch.manual_seed``, ``numpy``'s legacy seeding (via
``seed % 2**32``) and the ``trials.seed`` column (PostgreSQL INTEGER is 32-bit) all take."""

MAX_LABEL = 200
"""Longest level label (its ``name``, else its value as text): each variant's name joins them."""

_SEEDS_SCHEMA = {
    "description": f"a count (seeds 0..count-1), a list of distinct seeds in [0, {SEED_BOUND}), "
    "or adaptive seeds {initial, max, step}: as many seeds per comparison as it needs",
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": MAX_SEEDS},
        {"type": "array", "minItems": 1, "maxItems": MAX_SEEDS, "uniqueItems": True,
         "items": {"type": "integer", "minimum": 0, "maximum": SEED_BOUND - 1}},
        AdaptiveSeeds.model_json_schema(),
    ],
    "default": [0, 1, 2],
}


def _seeds_kind(value: Any) -> str:
    return "adaptive" if isinstance(value, dict | AdaptiveSeeds) else "fixed"


SeedsInput = Annotated[
    Annotated[list[int], Tag("fixed")] | Annotated[AdaptiveSeeds, Tag("adaptive")],
    Discriminator(_seeds_kind),
]
"""A seed list (a count becomes one first), or adaptive seeds: a mapping. One branch is
validated, so an error names only what was meant."""


class SpecError(ValueError):
    """A spec that cannot be run; ``errors`` is ``[{"field": ..., "reason": ...}]``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))
        self.errors = errors

    @classmethod
    def one(cls, field: str, reason: str) -> SpecError:
        return cls([{"field": field, "reason": reason}])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# ---- the spec -----------------------------------------------------------------------------

DEFAULT_REPORTED = ["mean_recall", "t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10"]


class MetricsSpec(_Strict):
    primary: Annotated[str, METRIC_NAME] = "mean_recall"
    reported: list[Annotated[str, METRIC_NAME]] = Field(
        default_factory=lambda: list(DEFAULT_REPORTED))


class RunOptions(BaseModel):
    """What the supervisor reads from a stored spec; the rest of the spec is ignored here."""

    model_config = ConfigDict(extra="ignore")

    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    seeds: SeedsInput = Field(default_factory=lambda: [0, 1, 2])
    stopping: Stopping | None = None
    rerun: bool = False

    @property
    def adaptive(self) -> AdaptiveSeeds | None:
        return self.seeds if isinstance(self.seeds, AdaptiveSeeds) else None

    def tracked_metrics(self) -> list[str]:
        """Primary first, then the reported ones, each once."""
        return list(dict.fromkeys([self.metrics.primary, *self.metrics.reported]))


class Level(_Strict):
    """One level of a factor: a value for the factor's path, or a set of dotted overrides."""

    model_config = ConfigDict(json_schema_extra=LEVEL_VALUE_OR_SET)

    name: str | None = Field(default=None, min_length=1, description="readable label",
                             json_schema_extra={"maxLength": MAX_LABEL})
    value: Any = None
    set: dict[str, Any] | None = Field(default=None, description="dotted path -> value")

    @model_validator(mode="after")
    def _value_or_set(self) -> Level:
        has_value = "value" in self.model_fields_set
        if has_value == (self.set is not None):
            raise ValueError("a level needs exactly one of 'value' or 'set'")
        return self

    @property
    def has_value(self) -> bool:
        return "value" in self.model_fields_set

    def label(self) -> str:
        if self.name:
            return self.name
        if self.has_value:
            return _value_label(self.value)
        return ",".join(f"{k}={_value_label(v)}" for k, v in (self.set or {}).items())


def _value_label(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    return str(value)


_LEVEL_KEYS = {"name", "value", "set"}


class Factor(_Strict):
    """A named switch: a config path and its levels (first = off/baseline, last = on/full)."""

    model_config = ConfigDict(json_schema_extra=PLAIN_LEVELS_NEED_PATH)

    path: str | None = Field(default=None, description="dotted TrainConfig path the levels set")
    levels: list[Annotated[Level, OrPlainValue]] = Field(
        min_length=2, description=f"at least two levels, a plain value or a mapping each; their "
        f"labels (a level's name, else its value as text) distinct and at most {MAX_LABEL} "
        "characters")

    @field_validator("levels", mode="before")
    @classmethod
    def _wrap_plain_values(cls, levels: Any) -> Any:
        if not isinstance(levels, list):
            return levels
        out = []
        for level in levels:
            if isinstance(level, dict) and level and set(level) <= _LEVEL_KEYS and (
                "value" in level or "set" in level
            ):
                out.append(level)
            elif isinstance(level, dict):
                raise ValueError(
                    "a level that is a mapping must be {name?, value} or {name?, set: {...}}"
                )
            else:
                out.append({"value": level})
        return out

    @model_validator(mode="after")
    def _consistent(self) -> Factor:
        for level in self.levels:
            if level.has_value and not self.path:
                raise ValueError("levels: a plain level value needs the factor's 'path'")
        labels = [level.label() for level in self.levels]
        for i, label in enumerate(labels):
            if len(label) > MAX_LABEL:  # it is repeated in every variant's name and error
                raise ValueError(f"levels: level {i}'s label is {len(label)} characters, over "
                                 f"{MAX_LABEL}: give it a short 'name'")
        if len(set(labels)) != len(labels):
            raise ValueError(f"levels: labels must be distinct, got {labels}")
        return self


class ExplicitVariant(_Strict):
    name: str = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict, description="dotted path -> value")


class BaseConfigSpec(_Strict):
    """The config every variant starts from: a preset, a nested override tree, dotted overrides."""

    preset: str | None = Field(default="tiny", json_schema_extra=PRESET_NAMES)
    overrides: dict[str, Any] = Field(default_factory=dict)
    set: dict[str, Any] = Field(default_factory=dict, description="dotted path -> value")


class Budget(_Strict):
    """Ceilings of this spec, checked at submission: an expansion over them is rejected."""

    max_trials: int | None = Field(default=None, ge=1, description="variants x seeds")
    max_total_steps: int | None = Field(
        default=None, ge=1, description="sum of schedule.steps over all trials"
    )


class AblationSpec(_Strict):
    """What to compare: a base config, the factors to switch, a design, seeds and metrics.

    Designs factorial, leave_one_out and add_one_in take factors (at least one) and no variants;
    design explicit takes variants (at least one, distinct names) and no factors. Beyond what
    this schema says, a POST refuses (422, naming the field) what only the expansion can tell:
    config paths and values, a baseline that is not a variant, more variants or trials than the
    controller's limits, data paths outside its data roots."""

    model_config = ConfigDict(json_schema_extra={**design_inputs(get_args(Design)),
                                                 "examples": [EXAMPLE]})

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    base: BaseConfigSpec = Field(default_factory=BaseConfigSpec)
    factors: dict[str, Factor] = Field(default_factory=dict)
    variants: Annotated[list[ExplicitVariant], VARIANTS_AS_MAPPING] = Field(
        default_factory=list, description="design=explicit only: a list, or a mapping of "
        "name -> {dotted path: value}"
    )
    design: Design = "factorial"
    baseline: str | None = Field(default=None, description="variant compared against: one of "
                                 "the variants the design makes (default: the design's own)")
    seeds: Annotated[SeedsInput, WithJsonSchema(_SEEDS_SCHEMA)] = Field(
        default_factory=lambda: [0, 1, 2], description="a list, a count, or adaptive seeds"
    )
    stopping: Stopping | None = Field(
        default=None, description="adaptive seeds only: when a comparison is decided "
        "(default: alpha 0.05, O'Brien-Fleming spending, no futility margin)")
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    budget: Budget = Field(default_factory=Budget)
    rerun: bool = Field(default=False, description="train again even if a cached result exists")

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count(cls, seeds: Any) -> Any:
        """A count becomes ``range(count)``, but only once it is known to be small."""
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            if not 1 <= seeds <= MAX_SEEDS:
                raise ValueError(f"a seed count must be between 1 and {MAX_SEEDS}, got {seeds}")
            return list(range(seeds))
        if isinstance(seeds, list) and len(seeds) > MAX_SEEDS:
            raise ValueError(f"at most {MAX_SEEDS} seeds, got {len(seeds)}")
        return seeds

    @field_validator("seeds")
    @classmethod
    def _seeds_distinct(cls, seeds: list[int] | AdaptiveSeeds) -> list[int] | AdaptiveSeeds:
        if isinstance(seeds, AdaptiveSeeds):
            return seeds
        if not seeds:
            raise ValueError("at least one seed")
        for i, seed in enumerate(seeds):
            if not 0 <= seed < SEED_BOUND:
                raise ValueError(f"seeds[{i}] is {seed}, outside the range every seed must lie "
                                 f"in, 0 <= seed < 2**31 = {SEED_BOUND}")
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds

    @field_validator("variants", mode="before")
    @classmethod
    def _variants_mapping(cls, variants: Any) -> Any:
        if isinstance(variants, dict):  # {name: {dotted: value}} keeps its order in YAML/JSON
            return [{"name": k, "set": v or {}} for k, v in variants.items()]
        return variants

    @model_validator(mode="after")
    def _metrics_exist(self) -> AblationSpec:
        """Refused here, not after hours of training: a metric no trial reports."""
        named = [("metrics.primary", self.metrics.primary)] + [
            ("metrics.reported", m) for m in self.metrics.reported]
        for field, name in named:
            if not is_trial_metric(name):
                raise ValueError(
                    f"{field}: no trial reports {name!r}; choose one of "
                    f"{', '.join(RETRIEVAL_METRICS)}, final_loss, final_loss_<objective> or a "
                    f"downstream task's ({', '.join(DOWNSTREAM_NAMES)})"
                )
        return self

    @model_validator(mode="after")
    def _stopping_needs_adaptive_seeds(self) -> AblationSpec:
        if self.stopping is not None and self.adaptive is None:
            raise ValueError("stopping: only adaptive seeds ({initial, max, step}) stop early; "
                             "a fixed seed list runs every seed")
        return self

    @property
    def adaptive(self) -> AdaptiveSeeds | None:
        return self.seeds if isinstance(self.seeds, AdaptiveSeeds) else None

    @property
    def first_seeds(self) -> list[int]:
        """The seeds every arm runs first: all of them, or an adaptive design's initial ones."""
        if isinstance(self.seeds, AdaptiveSeeds):
            return list(range(self.seeds.initial))
        return list(self.seeds)

    @property
    def max_seeds(self) -> int:
        """The most seeds an arm may run: what the trial limits are checked against."""
        return self.seeds.max if isinstance(self.seeds, AdaptiveSeeds) else len(self.seeds)

    @model_validator(mode="after")
    def _design_inputs(self) -> AblationSpec:
        if self.design == "explicit":
            if not self.variants:
                raise ValueError("variants: design 'explicit' needs at least one variant")
            if self.factors:
                raise ValueError("factors: design 'explicit' takes 'variants', not 'factors'")
            names = [v.name for v in self.variants]
            if len(set(names)) != len(names):
                raise ValueError(f"variants: names must be distinct, got {names}")
        else:
            if not self.factors:
                raise ValueError(f"factors: design {self.design!r} needs at least one factor")
            if self.variants:
                raise ValueError("variants: only design 'explicit' takes 'variants'")
        return self


def spec_to_json(spec: AblationSpec) -> dict[str, Any]:
    """The spec as stored: only what was given (defaults come back on validation), JSON types."""
    return spec.model_dump(mode="json", exclude_unset=True)

