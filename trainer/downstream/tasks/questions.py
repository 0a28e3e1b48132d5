"""VQA's question families: what a question means, its exact answer on a scene, and how to
propose a scene that has a chosen answer.

A question is drawn before its scene and independently of it; its answer is then chosen by
the balancer and planted into a random scene (``edits``), and finally computed from the
edited scene by ``answer``, which is the only source of labels. ``answer`` returns None for a
question that is ill-posed on the scene: a definite description ("the red square") that does
not pick out exactly one object, or any geometry fact it reads that is too close to call (0).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from trainer.data.captions import NP
from trainer.data.draws import Draws
from trainer.data.scenes import COLOURS, INVERSE, RELATIONS, SHAPES, SIZES, Scene, relation
from trainer.downstream.tasks.edits import CHOICES, random_np
from trainer.downstream.tasks.phrases import REL_WORDS, a, noun, the

YES, NO = "yes", "no"
ATTR_VALUES = {"colour": COLOURS, "shape": SHAPES, "size": SIZES}
ATTR_TEMPLATES = {"query", "relate", "relate2"}


@dataclass(frozen=True)
class Question:
    family: str
    template: str
    """The family and, where it has several, which wording (``query_colour``, ``more``...)."""
    text: str
    nps: tuple[NP, ...]
    attr: str | None = None
    rels: tuple[str, ...] = ()


def answer_list(max_count: int) -> tuple[str, ...]:
    """The closed answer list: yes/no, counts, colours, shapes, sizes."""
    return (YES, NO, *(str(k) for k in range(max_count + 1)), *COLOURS, *SHAPES, *SIZES)


def answer_set(q: Question, max_count: int) -> tuple[str, ...]:
    """The answers a question of this template can have (what the balancer spreads over)."""
    if q.family == "count":
        return tuple(str(k) for k in range(max_count + 1))
    if q.family in ATTR_TEMPLATES:
        assert q.attr is not None
        return ATTR_VALUES[q.attr]
    return (YES, NO)


# ---- exact answers --------------------------------------------------------------------------

def unique(scene: Scene, np_: NP) -> int | None:
    hits = [i for i, o in enumerate(scene) if np_.matches(o)]
    return hits[0] if len(hits) == 1 else None


def related(scene: Scene, anchor: int | None, rel: str) -> int | None:
    """The one object clearly ``rel`` of the anchor, every other clearly not (else None)."""
    if anchor is None:
        return None
    facts = {j: relation(o, scene[anchor], rel) for j, o in enumerate(scene) if j != anchor}
    hits = [j for j, f in facts.items() if f == 1]
    if 0 in facts.values() or len(hits) != 1:
        return None
    return hits[0]


def _value(scene: Scene, i: int | None, attr: str) -> str | None:
    return None if i is None else ATTR_VALUES[attr][getattr(scene[i], attr)]


def _yes(flag: bool) -> str:
    return YES if flag else NO


def answer(q: Question, scene: Scene, max_count: int) -> str | None:
    """The exact answer of ``q`` on ``scene``, or None when it is ill-posed there."""
    f = q.family
    if f == "exist":
        return _yes(any(q.nps[0].matches(o) for o in scene))
    if f == "count":
        n = sum(q.nps[0].matches(o) for o in scene)
        return str(n) if n <= max_count else None
    if f == "compare_count":
        ca, cb = (sum(np_.matches(o) for o in scene) for np_ in q.nps)
        return _yes({"more": ca > cb, "fewer": ca < cb, "equal": ca == cb}[q.template])
    assert q.attr is not None or f == "relate_exist"
    if f == "query":
        return _value(scene, unique(scene, q.nps[0]), str(q.attr))
    if f == "compare_attr":
        i, j = unique(scene, q.nps[0]), unique(scene, q.nps[1])
        if i is None or j is None or i == j:
            return None
        return _yes(getattr(scene[i], str(q.attr)) == getattr(scene[j], str(q.attr)))
    if f == "relate":
        return _value(scene, related(scene, unique(scene, q.nps[0]), q.rels[0]), str(q.attr))
    if f == "relate_exist":
        anchor = unique(scene, q.nps[0])
        if anchor is None:
            return None
        facts = [relation(o, scene[anchor], q.rels[0]) for j, o in enumerate(scene)
                 if j != anchor and q.nps[1].matches(o)]
        return None if 0 in facts else _yes(1 in facts)
    if f == "relate2":
        first = unique(scene, q.nps[0])
        second = related(scene, first, q.rels[0])
        third = related(scene, second, q.rels[1])
        # "the object right of the object left of X" is X again: its attribute is in the text
        return None if third == first else _value(scene, third, str(q.attr))
    raise ValueError(f"unknown question family {f!r}")


def with_rels(q: Question, rels: tuple[str, str]) -> Question:
    """A two-hop question with its hops replaced (``plants`` picks them from the positions;
    the answer is planted afterwards, so the text stays independent of it)."""
    rel, rel2 = rels
    text = (f"what {q.attr} is the object {REL_WORDS[rel2]} the object {REL_WORDS[rel]} "
            f"{the(q.nps[0])}?")
    return replace(q, text=text, rels=rels)


# ---- drawing questions ----------------------------------------------------------------------

def _others(attr: str) -> tuple[str, ...]:
    return tuple(x for x in ("shape", "colour", "size") if x != attr)


def sample_question(rng: Draws, family: str) -> Question:
    """A question of ``family``, drawn without looking at any scene."""
    if family in ("exist", "count"):
        np_ = random_np(rng)
        text = (f"is there {a(np_)}?" if family == "exist"
                else f"how many {noun(np_, plural=True)} are there?")
        return Question(family, family, text, (np_,))
    if family == "compare_count":
        kind = rng.choice(("shape", "colour"))
        va, vb = rng.sample(range(CHOICES[kind]), 2)
        na, nb = (NP(v, None) if kind == "shape" else NP(None, v) for v in (va, vb))
        pa, pb = noun(na, plural=True), noun(nb, plural=True)
        template = rng.choice(("more", "fewer", "equal"))
        text = {"more": f"are there more {pa} than {pb}?",
                "fewer": f"are there fewer {pa} than {pb}?",
                "equal": f"are there as many {pa} as {pb}?"}[template]
        return Question(family, template, text, (na, nb))
    attr = rng.choice(("colour", "shape", "size"))
    word = f"what {attr} is"
    if family == "query":
        np_ = random_np(rng, p_size=0.4, need=_others(attr), avoid=attr)
        return Question(family, f"query_{attr}", f"{word} {the(np_)}?", (np_,), attr)
    if family == "compare_attr":
        primary = {"colour": "shape", "shape": "colour"}.get(attr) or rng.choice(_others(attr))
        third = next(x for x in _others(attr) if x != primary)
        v1, v2 = rng.sample(range(CHOICES[primary]), 2)
        nps = tuple(
            replace(NP(None, None), **{primary: v},
                    **({third: rng.integers(CHOICES[third])} if rng.random() < 0.3 else {}))
            for v in (v1, v2))
        text = f"are {the(nps[0])} and {the(nps[1])} the same {attr}?"
        return Question(family, f"same_{attr}", text, nps, attr)
    rel = rng.choice(RELATIONS)
    anchor = random_np(rng)
    if family == "relate":
        text = f"{word} the object {REL_WORDS[rel]} {the(anchor)}?"
        return Question(family, f"relate_{attr}", text, (anchor,), attr, (rel,))
    if family == "relate_exist":
        np2 = random_np(rng)
        text = f"is there {a(np2)} {REL_WORDS[rel]} {the(anchor)}?"
        return Question(family, family, text, (anchor, np2), None, (rel,))
    if family == "relate2":
        rel2 = rng.choice([r for r in RELATIONS if r != INVERSE[rel]])
        return with_rels(Question(family, f"relate2_{attr}", "", (anchor,), attr), (rel, rel2))
    raise ValueError(f"unknown question family {family!r}")
