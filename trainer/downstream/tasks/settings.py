"""Each generated task's settings: everything that generates it, and nothing else, so the
settings (with the generator's version) are the task's cache key. Plain pydantic v2, strict
like ``trainer.config.sections``; torch-free."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainer.config.base import SEED_BOUND, PathStr

VQAFamily = Literal["exist", "count", "query", "compare_count", "compare_attr", "relate",
                    "relate_exist", "relate2"]
VQA_FAMILIES: tuple[VQAFamily, ...] = ("exist", "count", "query", "compare_count",
                                       "compare_attr", "relate", "relate_exist", "relate2")


class TaskSettings(BaseModel):
    """What every generated task shares: split sizes, the seed, image size and scene size.
    Strict scalars (no "3" for 3); tuples also accept JSON lists."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    num_train: int = Field(default=2000, ge=1)
    num_val: int = Field(default=500, ge=1)
    num_test: int = Field(default=1000, ge=1)
    benchmark_seed: int = Field(default=0, ge=0, lt=SEED_BOUND,
                                description="generates the task; independent of any training seed")
    image_size: int = Field(default=64, ge=16, le=1024)
    min_objects: int = Field(default=2, ge=1, le=8)
    max_objects: int = Field(
        default=4, ge=1, le=8,
        description="5 objects at the default radii take ~1 ms a scene to place (4: 0.2 ms)")
    root: PathStr | None = Field(default=None, description="cache directory (not part of the key)")

    @model_validator(mode="after")
    def _objects_range(self) -> TaskSettings:
        if self.min_objects > self.max_objects:
            raise ValueError("min_objects: must not exceed max_objects")
        return self

    def split_size(self, split: str) -> int:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]

    def key(self) -> dict[str, object]:
        """The generating fields (``root`` only says where the cache lives)."""
        return self.model_dump(exclude={"root"})


class VQASettings(TaskSettings):
    families: tuple[VQAFamily, ...] = Field(default=VQA_FAMILIES, min_length=1, strict=False)
    family_weights: tuple[float, ...] | None = Field(
        default=None, strict=False,
        description="relative share of each of ``families`` (default: yes/no families at "
        "half weight, so the global majority answer stays near 20%)")
    max_count: int = Field(default=3, ge=1, le=6, description="counts are answered 0..max_count")

    @model_validator(mode="after")
    def _weights(self) -> VQASettings:
        if self.family_weights is not None and (
                len(self.family_weights) != len(self.families)
                or any(w < 0 for w in self.family_weights) or sum(self.family_weights) <= 0):
            raise ValueError("family_weights: one non-negative weight per family, not all 0")
        if len(set(self.families)) != len(self.families):
            raise ValueError("families: each family once")
        return self


class NLVRSettings(TaskSettings):
    min_objects: int = Field(default=1, ge=1, le=8)
    max_objects: int = Field(default=4, ge=1, le=8)
    pairs_per_statement: int = Field(
        default=4, ge=2, le=64,
        description="image pairs per statement, half true and half false (consistency needs >1)")

    @model_validator(mode="after")
    def _even(self) -> NLVRSettings:
        if self.pairs_per_statement % 2:
            raise ValueError("pairs_per_statement: must be even (half true, half false)")
        return self


class VESettings(TaskSettings):
    min_objects: int = Field(default=1, ge=1, le=8)
    max_objects: int = Field(default=4, ge=1, le=8)


class GroundingSettings(TaskSettings):
    min_objects: int = Field(default=2, ge=2, le=8)
    max_objects: int = Field(default=4, ge=2, le=8)
    distractor_prob: float = Field(
        default=0.6, ge=0.0, le=1.0,
        description="chance of planting an object sharing the target's attributes, so the "
        "expression needs its relation or region")
