"""Ablation specs: ``schema`` says what a POST may contain (torch-free, so the Ray job's driver
reads a stored spec without loading PyTorch), ``parse`` reads one from a body with bounded work,
``expand`` turns one into named variants x seeds."""

from service.specs.expand import (
    BASELINE_NAME,
    FULL_NAME,
    Expansion,
    PlannedVariant,
    count_variants,
    default_baseline,
    expand,
)
from service.specs.parse import MAX_DEPTH, load_document, parse_spec
from service.specs.schema import (
    MAX_SEEDS,
    SEED_BOUND,
    AblationSpec,
    Budget,
    Design,
    Factor,
    Level,
    MetricsSpec,
    Resources,
    RunOptions,
    SpecError,
    spec_to_json,
)

__all__ = [
    "BASELINE_NAME",
    "FULL_NAME",
    "MAX_DEPTH",
    "MAX_SEEDS",
    "SEED_BOUND",
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
    "load_document",
    "parse_spec",
    "spec_to_json",
]
