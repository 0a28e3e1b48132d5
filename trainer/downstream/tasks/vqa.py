"""The generated VQA task (CLEVR-style): one question per image, its exact answer from the
scene graph, answers balanced per template (see ``balance``), a closed answer list."""

from __future__ import annotations

from trainer.data.scenes import Scene
from trainer.downstream.tasks.balance import Balancer
from trainer.downstream.tasks.plants import build
from trainer.downstream.tasks.questions import answer, answer_list, answer_set, sample_question
from trainer.downstream.tasks.settings import VQASettings
from trainer.downstream.tasks.streams import item_draws, render_images
from trainer.downstream.tasks.types import TaskSplit, VQAItem

TASK = "vqa"
QUESTION_TRIES = 20
SCENE_TRIES = 60
"""Proposals per question before drawing another (relations need an arrangement with no
close call around the anchor, which about half the random scenes have)."""
YES_NO_FAMILIES = ("exist", "compare_count", "compare_attr", "relate_exist")


def family_weights(s: VQASettings) -> tuple[float, ...]:
    """The settings' weights, or by default half weight for the yes/no families: with equal
    weights half of all questions would be yes/no and "yes" alone would score 25%."""
    if s.family_weights is not None:
        return s.family_weights
    return tuple(0.5 if f in YES_NO_FAMILIES else 1.0 for f in s.families)


def generate_split(s: VQASettings, split: str) -> TaskSplit[VQAItem]:
    rng = item_draws(s.benchmark_seed, TASK, split)
    weights = family_weights(s)
    balancer = Balancer()
    scenes: list[Scene] = []
    items: list[VQAItem] = []
    while len(items) < s.split_size(split):
        family = rng.weighted(s.families, weights)
        for _ in range(QUESTION_TRIES):
            q = sample_question(rng, family)
            target = balancer.target(rng, q.template, answer_set(q, s.max_count))
            scene = None
            for _ in range(SCENE_TRIES):
                proposal = build(rng, q, target, s)
                if proposal is not None:
                    q, scene = proposal
                    if answer(q, scene, s.max_count) == target:
                        break
                    scene = None
            if scene is not None:
                break
        else:
            raise RuntimeError(f"vqa: no scene for family {family!r} in {QUESTION_TRIES} "
                               f"questions (objects {s.min_objects}-{s.max_objects})")
        balancer.add(q.template, target)
        items.append(VQAItem(question_id=len(items), image=len(scenes), question=q.text,
                             answer=target, family=q.family, template=q.template))
        scenes.append(scene)
    images = render_images(scenes, s.image_size, s.benchmark_seed, TASK, split)
    return TaskSplit(TASK, split, images, scenes, tuple(items), answer_list(s.max_count))
