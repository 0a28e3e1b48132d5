"""The generated visual-entailment task (SNLI-VE-style): an image and a hypothesis, labelled
entailment, neutral or contradiction from the scene graph.

- entailment: a caption meaning that is clearly true (+1) of the scene;
- contradiction: clearly false (-1): a true caption with one fact changed
  (``captions.corrupt``), a true caption of the scene's minimal-pair partner that is false
  here (``scenes.sample_variant``), or an object that is absent, with an unshown property;
- neutral: what the image cannot settle: a relation or region that is too close to call (0
  for every object the words could mean), or a property the renderer never draws (what an
  object is made of, how heavy it is) of an object that is there.

Labels are balanced within each kind of wording a text-only model can see (a relation, a
region, an unshown property, a listing, a count, one object: ``text_group``), over the labels
that wording can have, so the wording does not give the label away. Relations and regions,
the only wordings that can be all three, carry most of the weight; the contradiction share
comes out a little higher (~38%) than the others, since the rest cannot be neutral or true.
"""

from __future__ import annotations

import itertools

from trainer.data.captions import (
    NP,
    REGION_WORDS,
    Form,
    corrupt,
    evaluate,
    parse,
    render_text,
    sample_form,
)
from trainer.data.draws import Draws
from trainer.data.scenes import RELATIONS, Scene, region, relation, sample_variant
from trainer.downstream.metrics import VE_LABELS
from trainer.downstream.tasks.balance import Balancer
from trainer.downstream.tasks.edits import random_np
from trainer.downstream.tasks.settings import VESettings
from trainer.downstream.tasks.streams import item_draws, render_images, scene_with
from trainer.downstream.tasks.types import TaskSplit, VEItem

TASK = "ve"
UNSHOWN = ("made of wood", "made of metal", "made of glass", "made of plastic",
           "that is heavy", "that is warm")
"""Properties no image of the benchmark shows (the renderer draws flat colour only)."""
GROUPS = ("rel", "located", "unshown", "and", "count", "single")
GROUP_WEIGHTS = (1.0, 1.0, 0.35, 0.12, 0.12, 0.11)
LABELS = {"rel": VE_LABELS, "located": VE_LABELS, "unshown": ("neutral", "contradiction")}
"""What each wording can be (the others: entailment or contradiction)."""
KINDS = {"entailment": (("entail",), (1.0,)),
         "contradiction": (("corrupt", "variant"), (0.55, 0.45)),
         "neutral": (("close_call",), (1.0,))}
UNSHOWN_KINDS = {"neutral": "unshown", "contradiction": "absent"}
TRIES = 400


def _with_property(rng: Draws, np_: NP) -> str:
    for _ in range(10):
        text = render_text(rng, Form("single", (np_,)))
        if not text.endswith("background"):
            break
    else:
        text = render_text(rng, Form("single", (np_,))).removesuffix(" on a dark background")
    return f"{text} {rng.choice(UNSHOWN)}"


def _close_call(rng: Draws, scene: Scene) -> Form | None:
    """A relation or region form that evaluates to 0: close for the objects it names and not
    clearly true of any other object it could mean."""
    if rng.random() < 0.5 and len(scene) >= 2:
        pairs = [(a, b, rel) for a, b in itertools.permutations(scene, 2) for rel in RELATIONS
                 if relation(a, b, rel) == 0]
        if pairs:
            a, b, rel = rng.choice(pairs)
            form = Form("rel", (NP(a.shape, a.colour), NP(b.shape, b.colour)), rel=rel)
            return form if evaluate(form, scene) == 0 else None
    spots = [(o, reg) for o in scene for reg in REGION_WORDS if region(o, *reg) == 0]
    if not spots:
        return None
    o, reg = rng.choice(spots)
    form = Form("single", (NP(o.shape, o.colour),), region=reg)
    return form if evaluate(form, scene) == 0 else None


def hypothesis(rng: Draws, scene: Scene, kind: str) -> str | None:
    """A hypothesis of ``kind`` about ``scene`` (None when this scene has none)."""
    if kind == "entail":
        form = sample_form(rng, scene)
        return render_text(rng, form) if evaluate(form, scene) == 1 else None
    if kind == "corrupt":
        bad = corrupt(rng, sample_form(rng, scene), scene)
        return None if bad is None else render_text(rng, bad)
    if kind == "variant":
        variant = sample_variant(rng, scene)
        if variant is None:
            return None
        form = sample_form(rng, variant[0])
        return render_text(rng, form) if evaluate(form, scene) == -1 else None
    if kind == "absent":
        np_ = random_np(rng)
        return None if evaluate(Form("single", (np_,)), scene) != -1 else _with_property(rng, np_)
    if kind == "unshown":
        o = rng.choice(scene)
        return _with_property(rng, NP(o.shape, o.colour, o.size if rng.random() < 0.4 else None))
    if kind == "close_call":
        close = _close_call(rng, scene)
        return None if close is None else render_text(rng, close)
    raise ValueError(f"unknown hypothesis kind {kind!r}")


def text_group(sentence: str) -> str:
    """What the words alone say about a hypothesis (its form's kind, or that it names an
    unshown property): the fallback key of the blind baseline."""
    if any(sentence.endswith(p) for p in UNSHOWN):
        return "unshown"
    form = parse(sentence)
    return "located" if form.region is not None else form.kind


def generate_split(s: VESettings, split: str) -> TaskSplit[VEItem]:
    rng = item_draws(s.benchmark_seed, TASK, split)
    balancer = Balancer()
    scenes: list[Scene] = []
    items: list[VEItem] = []
    while len(items) < s.split_size(split):
        group = rng.weighted(GROUPS, GROUP_WEIGHTS)
        label = balancer.target(rng, group, LABELS.get(group, ("entailment", "contradiction")))
        for _ in range(TRIES):
            kind = (UNSHOWN_KINDS[label] if group == "unshown"
                    else rng.weighted(*KINDS[label]))
            scene = scene_with(rng, s.min_objects, s.max_objects, 1)
            text = None if scene is None else hypothesis(rng, scene, kind)
            if scene is not None and text is not None and text_group(text) == group:
                break
        else:
            raise RuntimeError(f"ve: no {label} hypothesis worded as {group!r} in {TRIES} "
                               f"scenes")
        balancer.add(group, label)
        items.append(VEItem(image=len(scenes), sentence=text, label=label, kind=kind))
        scenes.append(scene)
    images = render_images(scenes, s.image_size, s.benchmark_seed, TASK, split)
    return TaskSplit(TASK, split, images, scenes, tuple(items))
