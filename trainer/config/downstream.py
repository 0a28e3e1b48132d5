"""``eval.downstream``: which downstream tasks a trial is evaluated on, and each task's data
and fine-tuning budget. Torch-free, like every config section.

The section is not part of a trial's key (``TrainConfig.canonical_json`` leaves it out):
pretraining does not depend on it, and each (trial, task settings) evaluation is keyed on its
own, so adding a task to a finished experiment runs that task's fine-tunes and nothing else.

Budgets were chosen on ``bench/downstream.py`` (its own seeds), never on a reproduction: round
4 there set batch 32 (was 64) and ``retrieval_ft`` 100 steps (was 200), which brings a
``tiny`` trial's downstream stage under its pretraining time (0.93x) with the pretrained trunk
still ahead of a random one on VQA, NLVR, VE and fine-tuned retrieval.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from trainer.config.base import Section
from trainer.downstream.tasks.settings import (
    GroundingSettings,
    NLVRSettings,
    VESettings,
    VQASettings,
)

DownstreamTask = Literal["vqa", "nlvr", "ve", "grounding", "retrieval_ft", "minimal_pairs"]
DOWNSTREAM_TASKS: tuple[DownstreamTask, ...] = ("vqa", "nlvr", "ve", "grounding",
                                                "retrieval_ft", "minimal_pairs")
FINETUNED_TASKS: tuple[DownstreamTask, ...] = ("vqa", "nlvr", "ve", "grounding")


class FinetuneSettings(Section):
    """One task's fine-tuning budget: AdamW under warmup + cosine, selected on val."""

    steps: int = Field(default=400, ge=1, le=1_000_000)
    batch_size: int = Field(default=32, ge=1, le=65_536,
                            description="examples a step (NLVR: statements, each with its "
                            "two images)")
    lr: float = Field(default=3e-4, gt=0.0, le=1.0)
    weight_decay: float = Field(default=0.02, ge=0.0, le=1.0)
    warmup_fraction: float = Field(default=0.1, ge=0.0, le=1.0)
    eval_every: int = Field(default=100, ge=1, description="validation every N steps")


class VQATask(Section):
    data: VQASettings = Field(default_factory=VQASettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)


class NLVRTask(Section):
    data: NLVRSettings = Field(default_factory=NLVRSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)


class VETask(Section):
    data: VESettings = Field(default_factory=VESettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)


class GroundingTask(Section):
    data: GroundingSettings = Field(default_factory=GroundingSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    proposals: Literal["fused_image", "image", "cross_attention"] = Field(
        default="image",
        description="what a proposal pools over its box: the image encoder's own patch states "
        "(what ITC and the fusion read; bench/results/downstream.md) or the image-side fused "
        "states (image tokens attending to the expression, a path ALBEF's recipe never trains), "
        "or the image states plus how much the expression's cross-attention gathers in each box "
        "(the map ALBEF's Grad-CAM grounding ranks by)")


class RetrievalFTTask(Section):
    """ALBEF's retrieval fine-tune (ITC + ITM with hard negatives) on the trial's own data."""

    finetune: FinetuneSettings = Field(
        default_factory=lambda: FinetuneSettings(steps=100, batch_size=64))


class DownstreamConfig(Section):
    tasks: tuple[DownstreamTask, ...] = Field(
        default=(), description="evaluated after pretraining, in this order")
    vqa: VQATask = Field(default_factory=VQATask)
    nlvr: NLVRTask = Field(default_factory=NLVRTask)
    ve: VETask = Field(default_factory=VETask)
    grounding: GroundingTask = Field(default_factory=GroundingTask)
    retrieval_ft: RetrievalFTTask = Field(default_factory=RetrievalFTTask)

    @field_validator("tasks")
    @classmethod
    def _each_once(cls, tasks: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(tasks)) != len(tasks):
            raise ValueError("each task once")
        return tasks

    def task(self, name: str) -> VQATask | NLVRTask | VETask | GroundingTask:
        return getattr(self, name)
