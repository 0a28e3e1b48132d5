"""Ablation specs: ``schema`` says what a POST may contain (torch-free, so the Ray job's driver
reads a stored spec without loading PyTorch), ``expand`` turns one into named variants x seeds."""

from service.specs.expand import (
    BASELINE_NAME,
    FULL_NAME,
    Expansion,
    PlannedVariant,
    count_variants,
    default_baseline,
    expand,
)
from service.specs.schema import (
    AblationSpec,
    Budget,
    Design,
    Factor,
    Level,
    MetricsSpec,
    Resources,
    RunOptions,
    SpecError,
    parse_spec,
    spec_to_json,
)

__all__ = [
    "BASELINE_NAME",
    "FULL_NAME",
    "AblationSpec",
    "Budget",
    "Design",
    "Expansion",
    "Factor",
    "Level",
    "MetricsSpec",
    "PlannedVariant",
    "Resources",
    "RunOptions",
    "SpecError",
    "count_variants",
    "default_baseline",
    "expand",
    "parse_spec",
    "spec_to_json",
]
