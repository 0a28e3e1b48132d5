"""The pure, deterministic expansion of an AblationSpec into named variants x seeds = trials.

Expansion is a pure function of the spec (no I/O, no clock, no randomness), so a dry run shows
exactly what a real submission would run, and two submissions of one spec make the same trials
(and trial keys).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from service.specs.schema import AblationSpec, Factor, Level, SpecError
from trainer.config import ConfigError, TrainConfig, build_config, deep_merge, nest
from trainer.metric_names import DOWNSTREAM_METRICS

FULL_NAME = "full"
BASELINE_NAME = "baseline"


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
    n_trials = n_variants * spec.max_seeds  # adaptive: as many as the last look could make
    where = "variants" if spec.design == "explicit" else "factors"
    most = "at most " if spec.adaptive else ""
    shape = f"{n_variants} variants x {most}{spec.max_seeds} seeds = {n_trials} trials"
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

    _downstream_metrics_have_their_task(spec, variants)
    names = [v.name for v in variants]
    baseline = spec.baseline or default_baseline(spec, names)
    if baseline not in names:
        raise SpecError.one(
            "baseline", f"{baseline!r} is not one of the variants: {', '.join(names)}"
        )
    if spec.budget.max_total_steps is not None:
        total = sum(v.config.planned_steps for v in variants) * spec.max_seeds
        if total > spec.budget.max_total_steps:
            raise SpecError.one(
                "budget.max_total_steps",
                f"the trials would take {total} steps in all; the budget allows "
                f"{spec.budget.max_total_steps}",
            )
    return Expansion(spec=spec, variants=variants, baseline=baseline, seeds=spec.first_seeds)


def _downstream_metrics_have_their_task(spec: AblationSpec,
                                        variants: list[PlannedVariant]) -> None:
    """A downstream metric is only reported by trials evaluated on its task: refused at POST
    when a variant would not be, rather than compared as missing after the run."""
    named = [("metrics.primary", spec.metrics.primary)] + [
        ("metrics.reported", m) for m in spec.metrics.reported]
    for where, metric in named:
        task = next((t for t, names in DOWNSTREAM_METRICS.items() if metric in names), None)
        if task is None:
            continue
        lacking = [v.name for v in variants if task not in v.config.eval.downstream.tasks]
        if lacking:
            raise SpecError.one(
                where, f"{metric!r} is reported by the downstream task {task!r}, which "
                f"eval.downstream.tasks of variant(s) {', '.join(lacking[:5])} does not name")
