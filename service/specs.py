"""AblationSpec, and its pure, deterministic expansion into named variants x seeds = trials.

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

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from service.run_options import MetricsSpec, Resources
from trainer.config import (
    ConfigError,
    TrainConfig,
    build_config,
    deep_merge,
    describe_validation_error,
)

Design = Literal["factorial", "leave_one_out", "add_one_in", "explicit"]

FULL_NAME = "full"
BASELINE_NAME = "baseline"


class SpecError(ValueError):
    """A spec that cannot be run; ``errors`` is ``[{"field": ..., "reason": ...}]``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))
        self.errors = errors

    @classmethod
    def one(cls, field: str, reason: str) -> SpecError:
        return cls([{"field": field, "reason": reason}])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- the spec -----------------------------------------------------------------------------

class Level(_Strict):
    """One level of a factor: a value for the factor's path, or a set of dotted overrides."""

    name: str | None = Field(default=None, min_length=1, description="readable label")
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

    path: str | None = Field(default=None, description="dotted TrainConfig path the levels set")
    levels: list[Level] = Field(min_length=2, description="at least two levels")

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
        if len(set(labels)) != len(labels):
            raise ValueError(f"levels: labels must be distinct, got {labels}")
        return self


class ExplicitVariant(_Strict):
    name: str = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict, description="dotted path -> value")


class BaseConfigSpec(_Strict):
    """The config every variant starts from: a preset, a nested override tree, dotted overrides."""

    preset: str | None = "tiny"
    overrides: dict[str, Any] = Field(default_factory=dict)
    set: dict[str, Any] = Field(default_factory=dict, description="dotted path -> value")


class Budget(_Strict):
    """Ceilings of this spec, checked at submission: an expansion over them is rejected."""

    max_trials: int | None = Field(default=None, ge=1, description="variants x seeds")
    max_total_steps: int | None = Field(
        default=None, ge=1, description="sum of schedule.steps over all trials"
    )


class AblationSpec(_Strict):
    """What to compare: a base config, the factors to switch, a design, seeds and metrics."""

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    base: BaseConfigSpec = Field(default_factory=BaseConfigSpec)
    factors: dict[str, Factor] = Field(default_factory=dict)
    variants: list[ExplicitVariant] = Field(
        default_factory=list, description="design=explicit only"
    )
    design: Design = "factorial"
    baseline: str | None = Field(default=None, description="variant compared against")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description="a list or a count")
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    budget: Budget = Field(default_factory=Budget)
    rerun: bool = Field(default=False, description="train again even if a cached result exists")

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count(cls, seeds: Any) -> Any:
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            if seeds < 1:
                raise ValueError("a seed count must be at least 1")
            return list(range(seeds))
        return seeds

    @field_validator("seeds")
    @classmethod
    def _seeds_distinct(cls, seeds: list[int]) -> list[int]:
        if not seeds:
            raise ValueError("at least one seed")
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


def parse_spec(data: dict[str, Any] | str | bytes) -> AblationSpec:
    """A spec from a mapping or YAML/JSON text; raises SpecError naming each bad field."""
    if isinstance(data, bytes | str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as err:
            raise SpecError.one("<body>", f"not valid YAML or JSON: {err}") from err
    if not isinstance(data, dict):
        raise SpecError.one("<body>", "a spec must be a mapping")
    try:
        return AblationSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(describe_validation_error(err)) from err


# ---- the expansion ------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedVariant:
    name: str
    levels: dict[str, str]
    """factor -> level label (empty for explicit variants)."""
    overrides: dict[str, Any]
    """nested override tree applied on the preset (base overrides + this variant's levels)."""
    config: TrainConfig


@dataclass(frozen=True)
class Expansion:
    spec: AblationSpec
    variants: list[PlannedVariant]
    baseline: str
    seeds: list[int] = field(default_factory=list)

    @property
    def trials(self) -> list[tuple[PlannedVariant, int]]:
        """Variant-major order: all seeds of the first variant, then the next."""
        return [(v, s) for v in self.variants for s in self.seeds]

    def variant(self, name: str) -> PlannedVariant:
        return next(v for v in self.variants if v.name == name)


Selection = tuple[str, dict[str, int]]
"""A variant name and, per factor, the index of the level it uses."""


def _selections(spec: AblationSpec) -> list[Selection]:
    names = list(spec.factors)
    n_levels = [len(f.levels) for f in spec.factors.values()]
    label = {n: [lv.label() for lv in f.levels] for n, f in spec.factors.items()}
    if spec.design == "factorial":
        out = []
        for combo in itertools.product(*(range(n) for n in n_levels)):
            chosen = dict(zip(names, combo, strict=True))
            out.append((",".join(f"{n}={label[n][i]}" for n, i in chosen.items()), chosen))
        return out
    first = dict.fromkeys(names, 0)
    last = {n: k - 1 for n, k in zip(names, n_levels, strict=True)}
    if spec.design == "leave_one_out":
        return [(FULL_NAME, last)] + [(f"w/o {n}", {**last, n: 0}) for n in names]
    if spec.design == "add_one_in":
        out = [(BASELINE_NAME, first)]
        chosen = dict(first)
        for i, n in enumerate(names):
            chosen = {**chosen, n: last[n]}
            out.append(("".join(f"+{m}" for m in names[: i + 1]), chosen))
        return out
    raise AssertionError(spec.design)  # explicit is handled by the caller


def count_variants(spec: AblationSpec) -> int:
    """How many variants the spec expands to, computed without building any config."""
    if spec.design == "explicit":
        return len(spec.variants)
    if spec.design == "factorial":
        n = 1
        for f in spec.factors.values():
            n *= len(f.levels)
        return n
    return len(spec.factors) + 1


def default_baseline(spec: AblationSpec, names: list[str]) -> str:
    """add_one_in: the first row; leave_one_out: the full model; factorial: all first levels;
    explicit: the first listed variant. All of these are the first expanded variant."""
    return names[0]


def nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "a.c": 2}`` -> ``{"a": {"b": 1, "c": 2}}`` (mapping values merge)."""
    tree: dict[str, Any] = {}
    for path, value in dotted.items():
        node: Any = value
        for key in reversed(path.split(".")):
            node = {key: node}
        tree = deep_merge(tree, node)
    return tree


def _level_overrides(factor: Factor, level: Level) -> dict[str, Any]:
    if level.has_value:
        assert factor.path is not None
        return nest({factor.path: level.value})
    return nest(level.set or {})


def _build(preset: str | None, overrides: dict[str, Any], where: str, variant: str | None
           ) -> TrainConfig:
    try:
        return build_config(preset, overrides=overrides)
    except ConfigError as err:
        if variant is None:
            raise SpecError.one(f"{where}.{err.field}", err.reason) from err
        raise SpecError.one(
            f"{where}[{variant}].{err.field}",
            f"variant {variant!r} is not a valid config: {err.field}: {err.reason}",
        ) from err


def expand(
    spec: AblationSpec, *, max_variants: int | None = None, max_trials: int | None = None
) -> Expansion:
    """The spec's named variants with resolved configs; raises SpecError naming the problem.

    Limits are checked before any config is built, so a huge grid is rejected cheaply.
    """
    n_variants = count_variants(spec)
    n_trials = n_variants * len(spec.seeds)
    where = "variants" if spec.design == "explicit" else "factors"
    shape = f"{n_variants} variants x {len(spec.seeds)} seeds = {n_trials} trials"
    if max_variants is not None and n_variants > max_variants:
        raise SpecError.one(
            where, f"the expansion would make {shape}; the limit is {max_variants} variants"
        )
    if max_trials is not None and n_trials > max_trials:
        raise SpecError.one(
            "seeds", f"the expansion would make {shape}; the limit is {max_trials} trials"
        )
    if spec.budget.max_trials is not None and n_trials > spec.budget.max_trials:
        raise SpecError.one(
            "budget.max_trials",
            f"the expansion would make {shape}; the budget allows {spec.budget.max_trials}",
        )

    base = deep_merge(spec.base.overrides, nest(spec.base.set))
    _build(spec.base.preset, base, "base", None)

    variants: list[PlannedVariant] = []
    if spec.design == "explicit":
        for ev in spec.variants:
            overrides = deep_merge(base, nest(ev.set))
            config = _build(spec.base.preset, overrides, "variants", ev.name)
            variants.append(PlannedVariant(ev.name, {}, overrides, config))
    else:
        for name, chosen in _selections(spec):
            overrides = base
            levels = {}
            for fname, idx in chosen.items():
                factor = spec.factors[fname]
                overrides = deep_merge(overrides, _level_overrides(factor, factor.levels[idx]))
                levels[fname] = factor.levels[idx].label()
            config = _build(spec.base.preset, overrides, "variants", name)
            variants.append(PlannedVariant(name, levels, overrides, config))

    names = [v.name for v in variants]
    baseline = spec.baseline or default_baseline(spec, names)
    if baseline not in names:
        raise SpecError.one(
            "baseline", f"{baseline!r} is not one of the variants: {', '.join(names)}"
        )
    if spec.budget.max_total_steps is not None:
        total = sum(v.config.schedule.steps for v in variants) * len(spec.seeds)
        if total > spec.budget.max_total_steps:
            raise SpecError.one(
                "budget.max_total_steps",
                f"the trials would take {total} steps in all; the budget allows "
                f"{spec.budget.max_total_steps}",
            )
    return Expansion(spec=spec, variants=variants, baseline=baseline, seeds=list(spec.seeds))
