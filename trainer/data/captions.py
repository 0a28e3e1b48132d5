"""The caption grammar of the `shapes` benchmark: meanings, their truth, and their wordings.

A caption is first a meaning (a ``Form``: one object, a conjunction, an exact listing with a
count, or a relation between two objects), sampled from facts that are clearly true of the
scene, then a wording: a template, synonyms and a mention order. Keeping the meaning separate
lets the generator check what matters for the benchmark:

- every clean caption evaluates to +1 on its image;
- a caption for one image of a minimal pair evaluates to -1 on the other image, so retrieval
  between the two is decidable, but only by binding attributes to objects or by relations;
- a corrupted (noisy) caption evaluates to -1 on its image.

``parse`` inverts the wording, which the tests use to check every rendered caption against its
scene without trusting the generator's bookkeeping.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace

from trainer.data.draws import Draws
from trainer.data.scenes import COLOURS, INVERSE, RELATIONS, SHAPES, Obj, Scene, region, relation

SIZE_WORDS: dict[int, tuple[str, ...]] = {0: ("small", "little", "tiny"), 1: ("large", "big")}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus sign"),
    "ring": ("ring", "donut"),
}
GENERIC_NOUNS = ("shape", "object")
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("to the left of", "left of", "on the left of"),
    "right": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
PRONOUN_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("to its left", "on its left"),
    "right": ("to its right", "on its right"),
    "above": ("above it", "over it"),
    "below": ("below it", "under it", "beneath it"),
}
Region = tuple[str | None, str | None]
REGION_WORDS: dict[Region, tuple[str, ...]] = {
    ("left", None): ("on the left", "on the left side"),
    ("right", None): ("on the right", "on the right side"),
    (None, "top"): ("at the top", "near the top"),
    (None, "bottom"): ("at the bottom", "near the bottom"),
    ("left", "top"): ("in the top left", "in the top left corner", "in the upper left"),
    ("right", "top"): ("in the top right", "in the top right corner", "in the upper right"),
    ("left", "bottom"): ("in the bottom left", "in the bottom left corner", "in the lower left"),
    ("right", "bottom"): (
        "in the bottom right", "in the bottom right corner", "in the lower right",
    ),
    ("center", "middle"): ("in the middle", "in the center", "in the centre"),
}
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass(frozen=True)
class NP:
    """A noun phrase: attributes an object must have (None = not mentioned)."""

    shape: int | None
    colour: int | None
    size: int | None = None

    def matches(self, o: Obj) -> bool:
        return (
            (self.shape is None or self.shape == o.shape)
            and (self.colour is None or self.colour == o.colour)
            and (self.size is None or self.size == o.size)
        )


@dataclass(frozen=True)
class Form:
    """A caption's meaning.

    kind "single": some object matches nps[0] (and lies in ``region`` when given);
    "and": distinct objects match each of nps; "count": exactly ``count`` objects, matching
    nps; "rel": an object matching nps[0] is ``rel`` of another matching nps[1].
    """

    kind: str
    nps: tuple[NP, ...]
    rel: str | None = None
    region: Region | None = None
    count: int | None = None


def evaluate(form: Form, scene: Scene) -> int:
    """Three-valued truth of ``form`` on ``scene``: +1 true, -1 false, 0 undecidable."""
    if form.kind == "single":
        best = -1
        for o in scene:
            if form.nps[0].matches(o):
                best = max(best, region(o, *form.region) if form.region else 1)
        return best
    if form.kind in ("and", "count"):
        if form.kind == "count" and form.count != len(scene):
            return -1
        for assign in itertools.permutations(range(len(scene)), len(form.nps)):
            if all(np_.matches(scene[i]) for np_, i in zip(form.nps, assign, strict=True)):
                return 1
        return -1
    if form.kind == "rel":
        assert form.rel is not None
        best = -1
        for a, b in itertools.permutations(scene, 2):
            if form.nps[0].matches(a) and form.nps[1].matches(b):
                best = max(best, relation(a, b, form.rel))
        return best
    raise ValueError(f"unknown form kind {form.kind!r}")


# ---- sampling meanings --------------------------------------------------------------------

def _np(rng: Draws, o: Obj, full: bool = False) -> NP:
    if full:
        return NP(o.shape, o.colour, o.size if rng.random() < 0.4 else None)
    colour = o.colour if rng.random() < 0.9 else None
    shape = o.shape if colour is None or rng.random() < 0.93 else None
    size = o.size if rng.random() < 0.4 else None
    return NP(shape, colour, size)


def _regions(o: Obj) -> list[Region]:
    return [r for r in REGION_WORDS if region(o, *r) == 1]


def sample_form(rng: Draws, scene: Scene) -> Form:
    """A meaning that is clearly true of ``scene`` (by construction)."""
    n = len(scene)
    if n == 1:
        kind = rng.weighted(["single", "located", "count"], [0.2, 0.45, 0.35])
    else:
        kind = rng.weighted(["rel", "and", "count", "single", "located"],
                           [0.45, 0.2, 0.2, 0.05, 0.1])
    order = [scene[i] for i in rng.permutation(n)]
    if kind == "rel":
        for a, b in itertools.permutations(order, 2):
            rels = [r for r in RELATIONS if relation(a, b, r) == 1]
            if rels:
                return Form("rel", (_np(rng, a), _np(rng, b)), rel=rng.choice(rels))
        kind = "and"
    if kind == "located":
        regions = _regions(order[0])
        if regions:
            reg = rng.choice(regions)
            return Form("single", (_np(rng, order[0]),), region=reg)
        kind = "single"
    if kind == "single":
        return Form("single", (_np(rng, order[0]),))
    if kind == "and":
        k = rng.integers(2, n + 1)
        return Form("and", tuple(_np(rng, o) for o in order[:k]))
    return Form("count", tuple(_np(rng, o, full=True) for o in order), count=n)


def full_forms(scene: Scene) -> list[Form]:
    """The most specific meanings of a scene, used when random ones fail to tell it apart
    from its minimal-pair partner: the exact listing, then every clear relation."""
    full = [NP(o.shape, o.colour, o.size) for o in scene]
    out = [Form("count", tuple(full), count=len(scene))]
    for (i, a), (j, b) in itertools.permutations(enumerate(scene), 2):
        for r in RELATIONS:
            if relation(a, b, r) == 1:
                out.append(Form("rel", (full[i], full[j]), rel=r))
    return out


def corrupt(rng: Draws, form: Form, scene: Scene, tries: int = 30) -> Form | None:
    """A partly wrong version of a true ``form``: one attribute, the binding of two colours,
    the relation or the region changed, such that it is clearly false (-1) on ``scene``."""
    for _ in range(tries):
        nps = list(form.nps)
        choice = rng.choice(["colour", "shape", "swap", "rel", "region"])
        new: Form | None = None
        if choice == "rel" and form.kind == "rel":
            assert form.rel is not None
            new = replace(form, rel=INVERSE[form.rel])
        elif choice == "region" and form.region is not None:
            regions = [r for r in REGION_WORDS if r != form.region]
            new = replace(form, region=rng.choice(regions))
        elif choice == "swap" and len(nps) >= 2:
            i, j = rng.sample(range(len(nps)), 2)
            if nps[i].colour is not None and nps[j].colour is not None:
                nps[i], nps[j] = (replace(nps[i], colour=nps[j].colour),
                                  replace(nps[j], colour=nps[i].colour))
                new = replace(form, nps=tuple(nps))
        elif choice in ("colour", "shape"):
            i = rng.integers(len(nps))
            cur = getattr(nps[i], choice)
            if cur is not None:
                options = [k for k in range(len(COLOURS if choice == "colour" else SHAPES))
                           if k != cur]
                nps[i] = replace(nps[i], **{choice: rng.choice(options)})
                new = replace(form, nps=tuple(nps))
        if new is not None and evaluate(new, scene) == -1:
            return new
    return None


# ---- wording ------------------------------------------------------------------------------

def _pick(rng: Draws, options: tuple[str, ...] | list[str]) -> str:
    return rng.choice(options)


def _article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def _np_words(rng: Draws, np_: NP) -> str:
    words = []
    if np_.size is not None:
        words.append(_pick(rng, SIZE_WORDS[np_.size]))
    if np_.colour is not None:
        words.append(COLOURS[np_.colour])
    words.append(_pick(rng, SHAPE_WORDS[SHAPES[np_.shape]] if np_.shape is not None
                       else GENERIC_NOUNS))
    return " ".join(words)


def _listing(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _number(n: int) -> str:
    return NUMBERS[n] if n < len(NUMBERS) else str(n)


def render_text(rng: Draws, form: Form) -> str:
    """One wording of ``form``: template, synonyms and mention order drawn from ``rng``."""
    if form.kind == "rel":
        assert form.rel is not None
        a, b = (_article(_np_words(rng, p)) for p in form.nps)
        way = rng.integers(4)
        if way == 0:
            core = f"{a} {_pick(rng, RELATION_WORDS[form.rel])} {b}"
        elif way == 1:
            core = f"{b} {_pick(rng, RELATION_WORDS[INVERSE[form.rel]])} {a}"
        elif way == 2:  # "a red circle with a blue square to its right"
            return f"{a} with {b} {_pick(rng, PRONOUN_WORDS[INVERSE[form.rel]])}"
        else:
            return f"{b} with {a} {_pick(rng, PRONOUN_WORDS[form.rel])}"
        style = rng.integers(4)
        if style == 1:  # "a red circle is left of a blue square"
            return _insert_verb(rng, core)
        return ("{c}", "{c}", "there is {c}", "{c} on a dark background")[style].format(c=core)
    if form.kind == "count":
        parts = [_article(_np_words(rng, p)) for p in form.nps]
        n = form.count or len(parts)
        if n == 1:
            return _pick(rng, ("a single {w}", "just one {s}: {a}", "only one {s}: {a}")).format(
                w=_np_words(rng, form.nps[0]), a=parts[0], s=_pick(rng, GENERIC_NOUNS))
        tpl = _pick(rng, ("{n} {s}s: {l}", "there are {n} {s}s: {l}",
                          "{n} {s}s, {l}", "a picture of {n} {s}s: {l}"))
        return tpl.format(n=_number(n), s=_pick(rng, GENERIC_NOUNS), l=_listing(parts))
    if form.kind == "and":
        parts = [_article(_np_words(rng, p)) for p in form.nps]
        tpl = _pick(rng, ("{l}", "there is {l}", "an image of {l}", "{l} on a dark background",
                          "a picture with {l}"))
        return tpl.format(l=_listing(parts))
    a = _article(_np_words(rng, form.nps[0]))
    if form.region is not None:
        where = _pick(rng, REGION_WORDS[form.region])
        tpl = _pick(rng, ("{a} {w}", "there is {a} {w}", "{w} there is {a}", "{a} placed {w}"))
        return tpl.format(a=a, w=where)
    return _pick(rng, ("{a}", "a picture of {a}", "there is {a}", "an image with {a}",
                       "{a} on a dark background")).format(a=a)


def _insert_verb(rng: Draws, core: str) -> str:
    """ "a red circle left of a blue square" -> "a red circle is left of a blue square"."""
    m = next(_NP_RE.finditer(core))
    verb = _pick(rng, ("is", "is", "sits", "is placed"))
    return f"{core[: m.end()]} {verb}{core[m.end():]}"


# ---- parsing ------------------------------------------------------------------------------

def _alt(words: list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_SIZE_OF = {w: s for s, ws in SIZE_WORDS.items() for w in ws}
_SHAPE_OF: dict[str, int | None] = {
    w: SHAPES.index(s) for s, ws in SHAPE_WORDS.items() for w in ws
}
_SHAPE_OF.update({w: None for w in GENERIC_NOUNS})
_NP_RE = re.compile(
    rf"\b(?:an?|single)\s+(?:(?P<size>{_alt(list(_SIZE_OF))})\s+)?"
    rf"(?:(?P<colour>{_alt(list(COLOURS))})\s+)?(?P<noun>{_alt(list(_SHAPE_OF))})\b"
)
_REL_OF = {w: r for r, ws in RELATION_WORDS.items() for w in ws}
_REL_RE = re.compile(rf"\b(?:{_alt(list(_REL_OF))})\b")
_PRON_OF = {w: r for r, ws in PRONOUN_WORDS.items() for w in ws}
_PRON_RE = re.compile(rf"\b(?:{_alt(list(_PRON_OF))})\b")
_REGION_OF = {w: r for r, ws in REGION_WORDS.items() for w in ws}
_REGION_RE = re.compile(rf"\b(?:{_alt(list(_REGION_OF))})\b")
_COUNT_RE = re.compile(rf"\b(?P<n>{_alt(list(NUMBERS))}|\d+) (?:shape|object)s?\b")


def parse(text: str) -> Form:
    """The meaning of a caption ``render_text`` wrote (ValueError for anything else)."""
    text = text.lower().strip()
    nps = list(_NP_RE.finditer(text))
    if not nps:
        raise ValueError(f"no noun phrase in {text!r}")
    sem = tuple(
        NP(_SHAPE_OF[m["noun"]], COLOURS.index(m["colour"]) if m["colour"] else None,
           _SIZE_OF[m["size"]] if m["size"] else None)
        for m in nps
    )
    count = _COUNT_RE.search(text)
    if count or text.startswith(("a single ", "single ")):
        n = 1 if not count else (NUMBERS.index(count["n"]) if count["n"] in NUMBERS
                                 else int(count["n"]))
        return Form("count", sem, count=n)
    if len(nps) == 2:
        between = text[nps[0].end(): nps[1].start()]
        rel = _REL_RE.search(between)
        if rel:
            return Form("rel", sem, rel=_REL_OF[rel.group(0)])
        pron = _PRON_RE.search(text[nps[1].end():])
        if pron:
            return Form("rel", (sem[1], sem[0]), rel=_PRON_OF[pron.group(0)])
    if len(nps) >= 2:
        return Form("and", sem)
    rest = text[: nps[0].start()] + " " + text[nps[0].end():]
    reg = _REGION_RE.search(rest)
    return Form("single", sem, region=_REGION_OF[reg.group(0)] if reg else None)
