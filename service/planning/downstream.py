"""The downstream stage of a planned experiment, before anything runs: which tasks each trial
is evaluated on and what their fine-tunes cost, next to pretraining's cost.

Both in samples, the one unit known before a trial runs: pretraining draws ``planned_steps x
samples_per_step``, a task's fine-tune ``finetune.steps x finetune.batch_size`` (the minimal
pairs are zero-shot: none). On the tiny preset and one thread a fine-tune step at batch 64
takes about 0.05 s, so samples convert to time on a known machine.
"""

from __future__ import annotations

from pydantic import BaseModel

from service.specs import Expansion
from service.specs.downstream import TASK_PRIMARY, finetune_samples


class TaskCost(BaseModel):
    task: str
    primary_metric: str
    trials: int
    """Trials evaluated on it now (an adaptive spec's first look)."""
    finetune_samples_per_trial: float
    """Mean over the variants that enable it (0: zero-shot)."""
    finetune_samples: int
    """Over all those trials."""


class DownstreamPlan(BaseModel):
    tasks: list[TaskCost]
    pretraining_samples_per_trial: float
    """Mean over the variants."""
    pretraining_samples: int
    finetune_samples: int
    """Every task's fine-tunes over every trial."""


def plan_downstream(expansion: Expansion) -> DownstreamPlan | None:
    """The tasks and their costs; None when no variant enables a downstream task."""
    seeds = len(expansion.seeds)
    per_task: dict[str, list[int]] = {}
    for v in expansion.variants:
        config = v.config.model_dump(mode="json")
        for task in v.config.eval.downstream.tasks:
            per_task.setdefault(task, []).append(finetune_samples(config, task))
    if not per_task:
        return None
    tasks = [TaskCost(task=t, primary_metric=TASK_PRIMARY[t], trials=len(s) * seeds,
                      finetune_samples_per_trial=sum(s) / len(s),
                      finetune_samples=sum(s) * seeds)
             for t, s in per_task.items()]
    pre = [v.config.planned_steps * v.config.samples_per_step for v in expansion.variants]
    return DownstreamPlan(tasks=tasks, pretraining_samples_per_trial=sum(pre) / len(pre),
                          pretraining_samples=sum(pre) * seeds,
                          finetune_samples=sum(t.finetune_samples for t in tasks))
