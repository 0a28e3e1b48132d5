"""The downstream tasks as a spec and a comparison see them, torch-free: which metrics belong to
which task, the one metric that stands for each task, and what a task's fine-tunes cost.

The cost unit is the fine-tune's samples, ``finetune.steps x finetune.batch_size`` (the
zero-shot minimal pairs fine-tune nothing): on the tiny preset one step at batch 64 takes about
0.05 s on one thread, so samples convert to time on a known machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainer.config.downstream import DOWNSTREAM_TASKS, FINETUNED_TASKS
from trainer.metric_names import DOWNSTREAM_METRICS, DOWNSTREAM_PRIMARY

TASK_PRIMARY = DOWNSTREAM_PRIMARY
"""The metric each task is judged by (``trainer.metric_names``)."""

__all__ = ["DOWNSTREAM_METRICS", "DOWNSTREAM_TASKS", "TASK_PRIMARY", "config_tasks",
           "finetune_samples", "task_of", "tasks_metrics"]


def task_of(metric: str) -> str | None:
    """The downstream task reporting ``metric``, or None for a pretraining metric."""
    return next((t for t, names in DOWNSTREAM_METRICS.items() if metric in names), None)


def config_tasks(config: dict[str, Any]) -> list[str]:
    """The tasks a stored (JSON) config enables, in its order."""
    tasks = ((config.get("eval") or {}).get("downstream") or {}).get("tasks") or []
    return [str(t) for t in tasks]


def tasks_metrics(tasks: Iterable[str]) -> list[str]:
    """Every metric of ``tasks``, in the canonical task order."""
    wanted = set(tasks)
    return [m for t in DOWNSTREAM_TASKS if t in wanted for m in DOWNSTREAM_METRICS[t]]


def finetune_samples(config: dict[str, Any], task: str) -> int:
    """Samples one trial's fine-tune of ``task`` draws under a stored config (0: zero-shot,
    or a config stored before the task had settings)."""
    if task not in (*FINETUNED_TASKS, "retrieval_ft"):
        return 0
    ft = (((config.get("eval") or {}).get("downstream") or {}).get(task) or {}).get("finetune")
    if not ft:
        return 0
    return int(ft.get("steps", 0)) * int(ft.get("batch_size", 0))
