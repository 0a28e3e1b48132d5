"""Propose a scene in which a VQA question has a chosen answer.

Each builder draws a random scene and edits attributes (never positions) so that the target
answer should hold; relation questions first search the sampled positions for objects in the
needed arrangement. A proposal may still miss (an edit made a description ambiguous, or a
resized object no longer fits): the generator keeps only scenes on which
``questions.answer`` gives the target.
"""

from __future__ import annotations

from trainer.data.draws import Draws
from trainer.data.scenes import INVERSE, RELATIONS, Obj, Scene, relation
from trainer.downstream.tasks.edits import edited, give, other_value, plant_count, set_attr, take
from trainer.downstream.tasks.questions import ATTR_VALUES, YES, Question, related, with_rels
from trainer.downstream.tasks.settings import VQASettings
from trainer.downstream.tasks.streams import scene_with


def _unique_anchor(rng: Draws, objs: list[Obj], anchor: int, q: Question) -> None:
    objs[anchor] = give(rng, objs[anchor], q.nps[0])
    for j in range(len(objs)):
        if j != anchor:
            objs[j] = take(rng, objs[j], q.nps[0])


def _set_answer(rng: Draws, objs: list[Obj], i: int, q: Question, target: str) -> None:
    assert q.attr is not None
    objs[i] = set_attr(rng, objs[i], q.attr, ATTR_VALUES[q.attr].index(target))


def build(rng: Draws, q: Question, target: str, s: VQASettings
          ) -> tuple[Question, Scene] | None:
    """A scene proposal for ``q`` with answer ``target`` (or None: try again), with ``q``
    itself (two-hop questions take their relations from the scene)."""
    if q.family == "relate2":
        return _relate2(rng, q, target, s)
    scene = _build(rng, q, target, s)
    return None if scene is None else (q, scene)


def _relate2(rng: Draws, q: Question, target: str, s: VQASettings
             ) -> tuple[Question, Scene] | None:
    """Two clear hops are rare for a fixed pair of relations (1 scene in ~100), so the hops
    are read off the positions: any chain the scene has, drawn uniformly. The answer is
    planted afterwards, so the text stays independent of it."""
    scene = scene_with(rng, s.min_objects, s.max_objects, 3)
    if scene is None:
        return None
    n = len(scene)
    chains = [(anchor, c, (r1, r2)) for anchor in range(n) for r1 in RELATIONS
              for r2 in RELATIONS if r2 != INVERSE[r1]
              if (c := related(scene, related(scene, anchor, r1), r2)) not in (None, anchor)]
    if not chains:
        return None
    anchor, c, rels = rng.choice(chains)
    q = with_rels(q, rels)
    objs = list(scene)
    _unique_anchor(rng, objs, anchor, q)
    _set_answer(rng, objs, c, q, target)
    out = edited(objs)
    return None if out is None else (q, out)


def _build(rng: Draws, q: Question, target: str, s: VQASettings) -> Scene | None:
    f = q.family
    need = {"count": int(target) if f == "count" else 0, "compare_attr": 2, "relate": 2,
            "relate_exist": 2, "relate2": 3}.get(f, 1)
    if f == "compare_count":
        return _compare_count(rng, q, target, s)
    scene = scene_with(rng, s.min_objects, s.max_objects, max(need, 1))
    if scene is None:
        return None
    objs = list(scene)
    n = len(objs)
    if f == "exist":
        if target == YES:
            i = rng.integers(n)
            objs[i] = give(rng, objs[i], q.nps[0])
            return edited(objs)
        return edited([take(rng, o, q.nps[0]) for o in objs])
    if f == "count":
        return plant_count(rng, scene, q.nps[0], int(target))
    if f == "query":
        i = rng.integers(n)
        _unique_anchor(rng, objs, i, q)
        _set_answer(rng, objs, i, q, target)
        return edited(objs)
    if f == "compare_attr":
        assert q.attr is not None
        i, j = rng.sample(range(n), 2)
        objs[i] = give(rng, objs[i], q.nps[0])
        objs[j] = give(rng, objs[j], q.nps[1])
        value = getattr(objs[i], q.attr)
        objs[j] = set_attr(rng, objs[j], q.attr,
                           value if target == YES else other_value(rng, q.attr, value))
        for k in range(n):
            if k not in (i, j):
                objs[k] = take(rng, take(rng, objs[k], q.nps[0]), q.nps[1])
        return edited(objs)
    if f == "relate":
        for anchor in rng.permutation(n):
            b = related(scene, anchor, q.rels[0])
            if b is not None:
                _unique_anchor(rng, objs, anchor, q)
                _set_answer(rng, objs, b, q, target)
                return edited(objs)
        return None
    if f == "relate_exist":
        anchor = rng.integers(n)
        _unique_anchor(rng, objs, anchor, q)
        facts = {j: relation(scene[j], scene[anchor], q.rels[0]) for j in range(n) if j != anchor}
        want = 1 if target == YES else -1
        pool = [j for j, fact in facts.items() if fact == want]
        plant = rng.choice(pool) if pool and (target == YES or rng.random() < 0.5) else None
        if target == YES and plant is None:
            return None
        for j, fact in facts.items():
            if j == plant:
                objs[j] = give(rng, objs[j], q.nps[1])
            elif fact != -1:
                objs[j] = take(rng, objs[j], q.nps[1])
        return edited(objs)
    raise ValueError(f"unknown question family {f!r}")


def _compare_count(rng: Draws, q: Question, target: str, s: VQASettings) -> Scene | None:
    """Plant counts (ca, cb) of the two descriptions that give the target, drawn uniformly
    among the pairs that fit; every other object gets a third value."""
    truth = {"more": lambda x, y: x > y, "fewer": lambda x, y: x < y,
             "equal": lambda x, y: x == y and x > 0}[q.template]
    pairs = [(x, y) for x in range(s.max_count + 1) for y in range(s.max_count + 1)
             if 0 < x + y <= s.max_objects and truth(x, y) == (target == YES)]
    if not pairs:
        return None
    ca, cb = rng.choice(pairs)
    scene = scene_with(rng, s.min_objects, s.max_objects, max(ca + cb, 1))
    if scene is None:
        return None
    kind = "shape" if q.nps[0].shape is not None else "colour"
    va, vb = getattr(q.nps[0], kind), getattr(q.nps[1], kind)
    rest = [v for v in range(len(ATTR_VALUES[kind])) if v not in (va, vb)]
    order = rng.permutation(len(scene))
    objs = list(scene)
    for rank, i in enumerate(order):
        value = va if rank < ca else vb if rank < ca + cb else rng.choice(rest)
        objs[i] = set_attr(rng, objs[i], kind, value)
    return edited(objs)
