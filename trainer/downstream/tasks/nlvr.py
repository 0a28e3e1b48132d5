"""The generated NLVR-style task: two images (left, right) and one statement, true or false.

Each statement is drawn first, without looking at any image, and then shown with
``pairs_per_statement`` image pairs, half of them made true and half false (counts planted,
or a pair of objects placed in the stated relation or against it), so NLVR's consistency
(every pair of a statement right) is computable and the statement alone says nothing of the
label. Labels come from the scene graphs; a statement whose truth on a pair would hinge on a
relation too close to call (0) is not used with that pair, even where another pair of
objects would settle it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from trainer.data.captions import NP
from trainer.data.draws import Draws
from trainer.data.scenes import RELATIONS, Scene, relation
from trainer.downstream.tasks.edits import edited, give, plant_count, random_np, take
from trainer.downstream.tasks.phrases import REL_WORDS, a, noun, number
from trainer.downstream.tasks.settings import NLVRSettings
from trainer.downstream.tasks.streams import item_draws, render_images, scene_with
from trainer.downstream.tasks.types import NLVRItem, TaskSplit

TASK = "nlvr"
FAMILIES = ("count_side", "both", "more", "relation")
MAX_COUNT = 3
TRIES = 100


@dataclass(frozen=True)
class Statement:
    family: str
    text: str
    nps: tuple[NP, ...]
    side: int = 0
    """0 left, 1 right (``count_side``)."""
    count: int = 0
    rel: str | None = None


def sample_statement(rng: Draws) -> Statement:
    family = rng.choice(FAMILIES)
    # no sizes in counts: three large objects rarely fit in one image
    np_ = random_np(rng, p_size=0.3 if family in ("both", "relation") else 0.0)
    if family == "count_side":
        side, k = rng.integers(2), rng.integers(1, MAX_COUNT + 1)
        text = (f"the {('left', 'right')[side]} image has exactly {number(k)} "
                f"{noun(np_, plural=k > 1)}")
        return Statement(family, text, (np_,), side=side, count=k)
    if family == "both":
        return Statement(family, f"both images contain {a(np_)}", (np_,))
    if family == "more":
        pl = noun(np_, plural=True)
        return Statement(family, f"there are more {pl} in the left image than in the right "
                                 "image", (np_,))
    rel = rng.choice(RELATIONS)
    np2 = random_np(rng)
    return Statement(family, f"at least one image has {a(np_)} {REL_WORDS[rel]} {a(np2)}",
                     (np_, np2), rel=rel)


def _count(scene: Scene, np_: NP) -> int:
    return sum(np_.matches(o) for o in scene)


def _related(scene: Scene, st: Statement) -> set[int]:
    """The relation facts of every pair the words could mean."""
    assert st.rel is not None
    return {relation(x, y, st.rel) for x, y in itertools.permutations(scene, 2)
            if st.nps[0].matches(x) and st.nps[1].matches(y)}


def truth(st: Statement, left: Scene, right: Scene) -> bool | None:
    """The statement's truth on the pair; None when it would hinge on a close call."""
    if st.family == "count_side":
        return _count((left, right)[st.side], st.nps[0]) == st.count
    if st.family == "both":
        return _count(left, st.nps[0]) > 0 and _count(right, st.nps[0]) > 0
    if st.family == "more":
        return _count(left, st.nps[0]) > _count(right, st.nps[0])
    # strict: any close pair makes the pair unusable, even beside a clear one
    facts = _related(left, st) | _related(right, st)
    return None if 0 in facts else 1 in facts


def _counts(rng: Draws, st: Statement, label: bool) -> tuple[int, int]:
    """(left, right) counts of the statement's noun phrase that give ``label``."""
    def holds(x: int, y: int) -> bool:
        if st.family == "count_side":
            return (x, y)[st.side] == st.count
        return x > 0 and y > 0 if st.family == "both" else x > y

    pairs = [(x, y) for x in range(MAX_COUNT + 1) for y in range(MAX_COUNT + 1)
             if holds(x, y) == label]
    return rng.choice(pairs)


def _arranged(rng: Draws, scene: Scene, st: Statement, fact: int) -> Scene | None:
    """``scene`` with two objects given the statement's phrases, placed with ``fact`` for the
    relation (+1: as stated, -1: against it)."""
    assert st.rel is not None
    pairs = [(i, j) for i, j in itertools.permutations(range(len(scene)), 2)
             if relation(scene[i], scene[j], st.rel) == fact]
    if not pairs:
        return None
    i, j = rng.choice(pairs)
    objs = [take(rng, take(rng, o, st.nps[0]), st.nps[1]) for o in scene]
    objs[i], objs[j] = give(rng, scene[i], st.nps[0]), give(rng, scene[j], st.nps[1])
    return edited(objs)


def propose(rng: Draws, st: Statement, label: bool, s: NLVRSettings
            ) -> tuple[Scene, Scene] | None:
    """An image pair meant to give ``label`` (checked by ``truth`` afterwards)."""
    if st.family == "relation":
        # the true image shows the relation; a false pair mostly shows it reversed in one
        # image (the objects are there, in the wrong places) and nothing of it in the other
        first = scene_with(rng, s.min_objects, s.max_objects, 2)
        other = scene_with(rng, s.min_objects, s.max_objects, 1)
        if first is None or other is None:
            return None
        # (some false pairs show it in neither: "a red diamond above a red diamond" cannot
        # be reversed)
        reverse = label or rng.random() < 0.6
        shown = (_arranged(rng, first, st, 1 if label else -1) if reverse
                 else edited([take(rng, o, st.nps[0]) for o in first]))
        plain = edited([take(rng, o, st.nps[0]) for o in other]) if not label else other
        if shown is None or plain is None:
            return None
        return (shown, plain) if rng.random() < 0.5 else (plain, shown)
    counts = _counts(rng, st, label)
    out = []
    for k in counts:
        scene = scene_with(rng, s.min_objects, s.max_objects, max(k, 1))
        planted = None if scene is None else plant_count(rng, scene, st.nps[0], k)
        if planted is None:
            return None
        out.append(planted)
    return out[0], out[1]


def _statement_pairs(rng: Draws, st: Statement, s: NLVRSettings
                     ) -> list[tuple[bool, tuple[Scene, Scene]]] | None:
    """All pairs of one statement, half true, in random order; None when one cannot be made
    (the statement is then dropped whole, so what a split holds never depends on its size)."""
    half = s.pairs_per_statement // 2
    labels = [True] * half + [False] * half
    out = []
    for label in (labels[k] for k in rng.permutation(len(labels))):
        for _ in range(TRIES):
            pair = propose(rng, st, label, s)
            if pair is not None and truth(st, *pair) == label:
                out.append((label, pair))
                break
        else:
            return None
    return out


def generate_split(s: NLVRSettings, split: str) -> TaskSplit[NLVRItem]:
    rng = item_draws(s.benchmark_seed, TASK, split)
    n = s.split_size(split)
    scenes: list[Scene] = []
    items: list[NLVRItem] = []
    statement_id = 0
    while len(items) < n:
        st = sample_statement(rng)
        pairs = _statement_pairs(rng, st, s)
        if pairs is None:
            continue
        for label, pair in pairs[: n - len(items)]:
            items.append(NLVRItem(images=(len(scenes), len(scenes) + 1), sentence=st.text,
                                  label=label, statement_id=statement_id, family=st.family))
            scenes.extend(pair)
        statement_id += 1
    images = render_images(scenes, s.image_size, s.benchmark_seed, TASK, split)
    return TaskSplit(TASK, split, images, scenes, tuple(items))
