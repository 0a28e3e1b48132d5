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


REGIONS = {"on the left": ("left", None), "on the right": ("right", None),
           "at the top": (None, "top"), "at the bottom": (None, "bottom"),
           "in the top left": ("left", "top"), "in the top right": ("right", "top"),
           "in the bottom left": ("left", "bottom"), "in the bottom right": ("right", "bottom"),
           "in the middle": ("center", "middle")}


def in_region(o: Obj, where: tuple[str | None, str | None]) -> int:
    """The soft thirds of the definition: left is x < 0.40 (clearly not past 0.50), the
    middle within 0.12 of the centre (clearly not past 0.20); the same for y."""
    def side(u: float, w: str | None) -> int:
        if w is None:
            return 1
        if w in ("left", "top"):
            return 1 if u < 0.40 else -1 if u > 0.50 else 0
        if w in ("right", "bottom"):
            return 1 if u > 0.60 else -1 if u < 0.50 else 0
        d = abs(u - 0.5)
        return 1 if d < 0.12 else -1 if d > 0.20 else 0
    return min(side(o.x, where[0]), side(o.y, where[1]))


def referent(text: str, scene: Scene) -> int:
    """The one object a generated referring expression picks out; IllPosed when it is not
    exactly one, CloseCall when any object's fact is 0."""
    N = NOUN
    regions = "|".join(REGIONS)
    if m := re.fullmatch(rf"the {N} {REL} the {N}", text):
        n, rel, anchor = noun(*m.groups()[:3]), m[4], the(scene, noun(*m.groups()[4:]))
        hits = [j for j, o in enumerate(scene)
                if j != anchor and n.fits(o) and clear(o, scene[anchor], rel)]
    elif m := re.fullmatch(rf"the {N} ({regions})", text):
        n, where = noun(*m.groups()[:3]), REGIONS[m[4]]
        facts = {j: in_region(o, where) for j, o in enumerate(scene) if n.fits(o)}
        if 0 in facts.values():
            raise CloseCall(m[4])
        hits = [j for j, f in facts.items() if f == 1]
    elif m := re.fullmatch(rf"the {N}", text):
        hits = [the(scene, noun(*m.groups()))]
    else:
        raise ValueError(f"not a generated expression: {text!r}")
    if len(hits) != 1:
        raise IllPosed(f"{text!r} picks {len(hits)} objects")
    return hits[0]


def _fits(np_: object, o: Obj) -> bool:
    shape, colour, size = (getattr(np_, k) for k in ("shape", "colour", "size"))
    return ((shape is None or shape == o.shape) and (colour is None or colour == o.colour)
            and (size is None or size == o.size))


_RELS = {"left": "left of", "right": "right of", "above": "above", "below": "below"}


def caption_truth(text: str, scene: Scene) -> int:
    """+1 / 0 / -1 of a caption-grammar sentence, read by ``captions.parse`` (the grammar's
    inverse) and judged here from the definitions: some object fits (and lies in the region),
    distinct objects fit each listed phrase (a count also fixes the number of objects), or
    some pair of fitting objects stands in the relation. The best case over the objects the
    words could mean counts."""
    import itertools

    from trainer.data.captions import parse
    form = parse(text)
    if form.kind == "single":
        where = form.region
        return max((in_region(o, where) if where else 1 for o in scene
                    if _fits(form.nps[0], o)), default=-1)
    if form.kind in ("and", "count"):
        if form.kind == "count" and form.count != len(scene):
            return -1
        ok = any(all(_fits(p, scene[i]) for p, i in zip(form.nps, perm, strict=True))
                 for perm in itertools.permutations(range(len(scene)), len(form.nps)))
        return 1 if ok else -1
    assert form.rel is not None
    return max((fact(a, b, _RELS[form.rel]) for a, b in itertools.permutations(scene, 2)
                if _fits(form.nps[0], a) and _fits(form.nps[1], b)), default=-1)


_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")


def nlvr_truth(sentence: str, left: Scene, right: Scene) -> bool:
    """A generated NLVR statement judged on an image pair (CloseCall where a fact it reads is
    0: for "at least one image has an X <rel> a Y", every X-Y pair in both images)."""
    N = NOUN
    if m := re.fullmatch(rf"the (left|right) image has exactly ({'|'.join(_NUMBERS)}) {N}",
                         sentence):
        scene = left if m[1] == "left" else right
        return count(scene, noun(*m.groups()[2:])) == _NUMBERS.index(m[2])
    if m := re.fullmatch(rf"both images contain an? {N}", sentence):
        n = noun(*m.groups())
        return count(left, n) > 0 and count(right, n) > 0
    if m := re.fullmatch(rf"there are more {N} in the left image than in the right image",
                         sentence):
        n = noun(*m.groups())
        return count(left, n) > count(right, n)
    if m := re.fullmatch(rf"at least one image has an? {N} {REL} an? {N}", sentence):
        x, rel, y = noun(*m.groups()[:3]), m[4], noun(*m.groups()[4:])
        found = [clear(o, p, rel) for scene in (left, right) for i, o in enumerate(scene)
                 for j, p in enumerate(scene) if i != j and x.fits(o) and y.fits(p)]
        return any(found)
    raise ValueError(f"not a generated statement: {sentence!r}")
