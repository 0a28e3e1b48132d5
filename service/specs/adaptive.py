"""Adaptive seeds in a spec: ``seeds: {initial, max, step}`` and ``stopping``.

Instead of a fixed seed list, every arm starts with ``initial`` seeds (0, 1, ...); after each
look the service adds ``step`` more seeds to the baseline and to the variants whose comparison
is still undecided, until each comparison is decided (an effect, or with ``min_effect`` its
absence) or ``max`` seeds are reached. ``service.analysis.sequential`` decides; this module only
says what a spec may ask for.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.analysis.sequential import Schedule, StoppingRule

MAX_ADAPTIVE_SEEDS = 100
"""Most seeds an adaptive arm may reach: each look's boundaries are simulated up to ``max``."""
MAX_LOOKS = 20
"""Most looks a schedule may plan: every look spends alpha and costs a round of trials."""


class AdaptiveSeeds(BaseModel):
    """Seeds 0..initial-1 first; then ``step`` more per look, up to ``max``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    initial: int = Field(ge=2, le=MAX_ADAPTIVE_SEEDS, description="seeds every arm runs first "
                         "(at least 2: a paired t test needs two)")
    max: int = Field(ge=2, le=MAX_ADAPTIVE_SEEDS, description="most seeds any arm runs")
    step: int = Field(default=1, ge=1, le=MAX_ADAPTIVE_SEEDS,
                      description="seeds added per look to the arms still undecided")

    @model_validator(mode="after")
    def _ordered(self) -> AdaptiveSeeds:
        if self.initial > self.max:
            raise ValueError(f"initial ({self.initial}) must not exceed max ({self.max})")
        looks = len(self.schedule().looks())
        if looks > MAX_LOOKS:
            raise ValueError(f"{looks} looks planned (initial {self.initial}, step {self.step}, "
                             f"max {self.max}); at most {MAX_LOOKS}: take a larger step")
        return self

    def schedule(self) -> Schedule:
        return Schedule(initial=self.initial, max=self.max, step=self.step)


class Stopping(BaseModel):
    """When a comparison is decided: the family-wise error over all looks and comparisons."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    alpha: float = Field(default=0.05, gt=0.0, le=0.5,
                         description="family-wise error over every look and comparison")
    method: Literal["obrien_fleming", "pocock"] = Field(
        default="obrien_fleming", description="alpha spending across looks (Lan-DeMets): "
        "obrien_fleming spends little early, pocock evenly")
    min_effect: float | None = Field(
        default=None, gt=0.0, description="differences smaller than this (primary metric's "
        "units) are not worth having: a comparison whose repeated CI lies within +-min_effect "
        "stops as 'no effect'. Unset: only effects stop a comparison early")

    futility: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="stop a comparison as 'futile' when the "
        "chance that max seeds would decide it, at its current trend (conditional power), falls "
        "under this (e.g. 0.1); non-binding, so alpha is kept. Unset: undecided comparisons run "
        "to max")

    def rule(self, higher_is_better: bool) -> StoppingRule:
        return StoppingRule(alpha=self.alpha, spending=self.method, min_effect=self.min_effect,
                            higher_is_better=higher_is_better, futility=self.futility)
