"""One entry point for the generated downstream tasks: ``load_task(name, settings)`` gives
every split, from the content-addressed cache when it holds them, and ``describe`` gives a
task's class balance and the text-only baselines, for benches and reports."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Literal, overload

from trainer.downstream.tasks import cache
from trainer.downstream.tasks.baselines import blind, class_balance, majority
from trainer.downstream.tasks.settings import (
    GroundingSettings,
    NLVRSettings,
    TaskSettings,
    VESettings,
    VQASettings,
)
from trainer.downstream.tasks.streams import SPLITS
from trainer.downstream.tasks.types import GroundingItem, NLVRItem, TaskSplit, VEItem, VQAItem

TaskName = Literal["vqa", "nlvr", "ve", "grounding"]
TASKS: tuple[TaskName, ...] = ("vqa", "nlvr", "ve", "grounding")
SETTINGS: dict[str, type[TaskSettings]] = {
    "vqa": VQASettings, "nlvr": NLVRSettings, "ve": VESettings, "grounding": GroundingSettings}


def _generator(name: str) -> Callable[[Any, str], TaskSplit[Any]]:
    if name == "vqa":
        from trainer.downstream.tasks.vqa import generate_split
        return generate_split
    if name == "grounding":
        from trainer.downstream.tasks.grounding import generate_split as grounding
        return grounding
    if name == "ve":
        from trainer.downstream.tasks.entailment import generate_split as ve
        return ve
    if name == "nlvr":
        from trainer.downstream.tasks.nlvr import generate_split as nlvr
        return nlvr
    raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")


def generate(name: str, settings: TaskSettings) -> dict[str, TaskSplit[Any]]:
    """Every split, generated (no cache)."""
    if not isinstance(settings, SETTINGS[name]):
        raise TypeError(f"{name}: expected {SETTINGS[name].__name__}, "
                        f"got {type(settings).__name__}")
    make = _generator(name)
    return {split: make(settings, split) for split in SPLITS}


@overload
def load_task(name: Literal["vqa"], settings: VQASettings | None = None, *,
              use_cache: bool = True) -> dict[str, TaskSplit[VQAItem]]: ...
@overload
def load_task(name: Literal["nlvr"], settings: NLVRSettings | None = None, *,
              use_cache: bool = True) -> dict[str, TaskSplit[NLVRItem]]: ...
@overload
def load_task(name: Literal["ve"], settings: VESettings | None = None, *,
              use_cache: bool = True) -> dict[str, TaskSplit[VEItem]]: ...
@overload
def load_task(name: Literal["grounding"], settings: GroundingSettings | None = None, *,
              use_cache: bool = True) -> dict[str, TaskSplit[GroundingItem]]: ...
def load_task(name: str, settings: TaskSettings | None = None, *,
              use_cache: bool = True) -> dict[str, TaskSplit[Any]]:
    """The train/val/test splits of task ``name`` (default settings when None), read from
    the cache when present, else generated and cached (``settings.root`` or the data cache)."""
    if name not in SETTINGS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    settings = settings if settings is not None else SETTINGS[name]()
    path = cache.cache_path(name, settings)
    if use_cache and path.exists():
        try:
            return cache.load(path)
        except Exception:  # unreadable, truncated or from another writer: regenerate
            pass
    splits = generate(name, settings)
    if use_cache:
        cache.save(path, splits)
    return splits


def _columns(split: TaskSplit[Any]) -> tuple[list[Hashable], list[str], list[Hashable]]:
    """(labels, texts, groups) of a split, whatever its task."""
    items = split.items
    if split.task == "vqa":
        return [i.answer for i in items], [i.question for i in items], [i.family for i in items]
    if split.task == "nlvr":
        return [i.label for i in items], [i.sentence for i in items], [i.family for i in items]
    if split.task == "ve":
        from trainer.downstream.tasks.entailment import text_group
        texts = [i.sentence for i in items]
        return [i.label for i in items], texts, [text_group(t) for t in texts]
    return [i.target for i in items], [i.text for i in items], [i.kind for i in items]


def describe(splits: dict[str, TaskSplit[Any]]) -> dict[str, Any]:
    """Sizes, the test split's class balance (overall and per group), chance, the majority
    and the blind baselines (learned on train, scored on test)."""
    train, test = splits["train"], splits["test"]
    y_train, x_train, g_train = _columns(train)
    y_test, x_test, g_test = _columns(test)
    per_group: dict[str, dict[str, float]] = {}
    for group in sorted({str(g) for g in g_test}):
        per_group[group] = class_balance([y for y, g in zip(y_test, g_test, strict=True)
                                          if str(g) == group])
    if test.task == "grounding":
        chance = sum(1 / len(i.proposals) for i in test.items) / len(test.items)
    else:
        chance = 1 / len(set(y_test))
    return {
        "task": test.task,
        "items": {name: len(s.items) for name, s in splits.items()},
        "images": {name: int(s.images.shape[0]) for name, s in splits.items()},
        "image_size": int(test.images.shape[-1]),
        "balance": class_balance(y_test),
        "per_group": per_group,
        "chance": chance,
        "majority": majority(y_train, y_test).accuracy,
        "blind": blind(x_train, g_train, y_train, x_test, g_test, y_test).accuracy,
        "distinct_texts": len(set(x_test)),
        "test_texts_seen_in_train": sum(x in set(x_train) for x in x_test) / len(x_test),
    }
