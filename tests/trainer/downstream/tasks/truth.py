"""An evaluator written from the tasks' definitions, not from their code: it reads the words
of a generated text back into a meaning and judges it on the scene graph, with the geometry
facts recomputed from the object centres. A fact too close to call raises ``CloseCall``; a
definite description that does not pick out one object raises ``IllPosed``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from trainer.data.scenes import COLOURS, RELATION_MARGIN, SHAPES, SIZES, Obj, Scene


class CloseCall(Exception):
    pass


class IllPosed(Exception):
    pass


@dataclass(frozen=True)
class Noun:
    size: str | None
    colour: str | None
    shape: str | None  # None: "object"

    def fits(self, o: Obj) -> bool:
        return ((self.size is None or SIZES[o.size] == self.size)
                and (self.colour is None or COLOURS[o.colour] == self.colour)
                and (self.shape is None or SHAPES[o.shape] == self.shape))


_PLURAL = {s + ("es" if s.endswith(("s", "x")) else "s"): s for s in (*SHAPES, "object")}
NOUN = (rf"(?:({'|'.join(SIZES)}) )?(?:({'|'.join(COLOURS)}) )?"
        rf"({'|'.join([*SHAPES, 'object', *_PLURAL])})")
REL = r"(left of|right of|above|below)"


def noun(size: str | None, colour: str | None, head: str) -> Noun:
    head = _PLURAL.get(head, head)
    return Noun(size, colour, None if head == "object" else head)


def fact(o: Obj, anchor: Obj, rel: str) -> int:
    """Is ``o`` <rel> ``anchor``? From the centres, with the definition's margin."""
    d = {"left of": anchor.x - o.x, "right of": o.x - anchor.x,
         "above": anchor.y - o.y, "below": o.y - anchor.y}[rel]
    return 1 if d > RELATION_MARGIN else -1 if d < -RELATION_MARGIN else 0


def clear(o: Obj, anchor: Obj, rel: str) -> bool:
    f = fact(o, anchor, rel)
    if f == 0:
        raise CloseCall(rel)
    return f == 1


def the(scene: Scene, n: Noun) -> int:
    hits = [i for i, o in enumerate(scene) if n.fits(o)]
    if len(hits) != 1:
        raise IllPosed(f"{n} matches {len(hits)} objects")
    return hits[0]


def the_one(scene: Scene, anchor: int, rel: str) -> int:
    """The object clearly <rel> the anchor, every other object clearly not."""
    hits = [j for j, o in enumerate(scene) if j != anchor and clear(o, scene[anchor], rel)]
    if len(hits) != 1:
        raise IllPosed(f"{len(hits)} objects {rel} the anchor")
    return hits[0]


def count(scene: Scene, n: Noun) -> int:
    return sum(n.fits(o) for o in scene)


def value(o: Obj, attr: str) -> str:
    return {"colour": COLOURS[o.colour], "shape": SHAPES[o.shape], "size": SIZES[o.size]}[attr]


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def vqa_answer(question: str, scene: Scene) -> str:
    """The answer of a generated VQA question, from its words and the scene."""
    N = NOUN
    if m := re.fullmatch(rf"is there an? {N} {REL} the {N}\?", question):
        target, rel, anchor = noun(*m.groups()[:3]), m[4], noun(*m.groups()[4:])
        a = the(scene, anchor)
        found = [clear(o, scene[a], rel) for j, o in enumerate(scene)
                 if j != a and target.fits(o)]
        return yes(any(found))
    if m := re.fullmatch(rf"is there an? {N}\?", question):
        return yes(count(scene, noun(*m.groups())) > 0)
    if m := re.fullmatch(rf"how many {N} are there\?", question):
        return str(count(scene, noun(*m.groups())))
    if m := re.fullmatch(rf"are there (more|fewer) {N} than {N}\?", question):
        x, y = count(scene, noun(*m.groups()[1:4])), count(scene, noun(*m.groups()[4:]))
        return yes(x > y if m[1] == "more" else x < y)
    if m := re.fullmatch(rf"are there as many {N} as {N}\?", question):
        return yes(count(scene, noun(*m.groups()[:3])) == count(scene, noun(*m.groups()[3:])))
    if m := re.fullmatch(rf"are the {N} and the {N} the same (colour|shape|size)\?", question):
        i, j = the(scene, noun(*m.groups()[:3])), the(scene, noun(*m.groups()[3:6]))
        if i == j:
            raise IllPosed("both descriptions name one object")
        return yes(value(scene[i], m[7]) == value(scene[j], m[7]))
    if m := re.fullmatch(rf"what (colour|shape|size) is the object {REL} the object {REL} "
                         rf"the {N}\?", question):
        first = the(scene, noun(*m.groups()[3:]))
        return value(scene[the_one(scene, the_one(scene, first, m[3]), m[2])], m[1])
    if m := re.fullmatch(rf"what (colour|shape|size) is the object {REL} the {N}\?", question):
        return value(scene[the_one(scene, the(scene, noun(*m.groups()[2:])), m[2])], m[1])
    if m := re.fullmatch(rf"what (colour|shape|size) is the {N}\?", question):
        return value(scene[the(scene, noun(*m.groups()[1:]))], m[1])
    raise ValueError(f"not a generated question: {question!r}")
