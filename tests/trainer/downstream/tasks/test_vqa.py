"""The generated VQA task against its definition: hand-made scenes with known answers, every
generated answer re-derived from the question's words by ``truth``, balance, baselines,
determinism and the cache."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.trainer.downstream.tasks.conftest import obj
from tests.trainer.downstream.tasks.truth import IllPosed, vqa_answer
from trainer.data.captions import NP
from trainer.data.scenes import COLOURS, SHAPES
from trainer.downstream.tasks import VQASettings, describe, load_task
from trainer.downstream.tasks.cache import cache_path
from trainer.downstream.tasks.questions import Question, answer, answer_list
from trainer.downstream.tasks.vqa import generate_split

SMALL = VQASettings(num_train=600, num_val=50, num_test=400, image_size=16)

# two red circles (a small one top left, a large one higher than the middle, right) and a
# small blue square at the bottom middle
RED_BLUE = (obj("circle", "red", 0.2, 0.15), obj("circle", "red", 0.8, 0.35, size=1),
            obj("square", "blue", 0.5, 0.8))


def np_(shape: str | None = None, colour: str | None = None, size: int | None = None) -> NP:
    return NP(None if shape is None else SHAPES.index(shape),
              None if colour is None else COLOURS.index(colour), size)


@pytest.mark.parametrize(("question", "expected"), [
    ("how many circles are there?", "2"),
    ("how many red circles are there?", "2"),
    ("how many squares are there?", "1"),
    ("how many green objects are there?", "0"),
    ("is there a blue square?", "yes"),
    ("is there a red square?", "no"),
    ("what colour is the square?", "blue"),
    ("what size is the square?", "small"),
    ("what shape is the large object?", "circle"),
    ("are there more red objects than blue objects?", "yes"),
    ("are there fewer circles than squares?", "no"),
    ("are there as many circles as squares?", "no"),
    ("are the large circle and the square the same colour?", "no"),
    ("what shape is the object above the square?", None),  # ill-posed: two are above
    ("what colour is the object below the large circle?", "blue"),
    ("what size is the object above the object right of the square?", "small"),
    ("what size is the object left of the object right of the square?", None),  # two left
    ("is there a red object left of the square?", "yes"),
    ("is there a blue object above the small circle?", "no"),
])
def test_hand_made_scene_answers(question: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(IllPosed):
            vqa_answer(question, RED_BLUE)
        return
    assert vqa_answer(question, RED_BLUE) == expected


@pytest.mark.parametrize(("q", "expected"), [
    (Question("count", "count", "", (np_("circle"),)), "2"),
    (Question("exist", "exist", "", (np_("square", "red"),)), "no"),
    (Question("query", "query_colour", "", (np_("square"),), "colour"), "blue"),
    (Question("query", "query_shape", "", (np_(size=1),), "shape"), "circle"),
    (Question("query", "query_colour", "", (np_("circle"),), "colour"), None),  # two circles
    (Question("compare_count", "more", "", (np_(colour="red"), np_(colour="blue"))), "yes"),
    (Question("compare_attr", "same_colour", "", (np_("circle", size=0), np_("circle", size=1)),
              "colour"), "yes"),
    (Question("relate", "relate_colour", "", (np_(size=1),), "colour", ("below",)), "blue"),
    (Question("relate", "relate_shape", "", (np_("square"),), "shape", ("above",)), None),
    (Question("relate_exist", "relate_exist", "", (np_("square"), np_(colour="red")), None,
              ("left",)), "yes"),
    (Question("relate2", "relate2_size", "", (np_("square"),), "size", ("right", "above")),
     "small"),
    (Question("relate2", "relate2_size", "", (np_("square"),), "size", ("right", "left")),
     None),
])
def test_the_generators_answer_on_a_hand_made_scene(q: Question, expected: str | None) -> None:
    assert answer(q, RED_BLUE, max_count=3) == expected


def test_a_close_call_makes_a_relation_question_ill_posed() -> None:
    scene = (obj("circle", "red", 0.45, 0.2), obj("square", "blue", 0.5, 0.8))  # dx = 0.05
    q = Question("relate", "relate_colour", "", (np_("square"),), "colour", ("left",))
    assert answer(q, scene, max_count=3) is None


@pytest.fixture(scope="module")
def splits():
    return {name: generate_split(SMALL, name) for name in ("train", "test")}


def test_every_answer_follows_from_the_question_and_scene(splits) -> None:
    """The independent evaluator raises on a close call or an ambiguous description, so this
    also checks that no question hinges on a 0 fact."""
    for split in splits.values():
        for item in split.items:
            assert vqa_answer(item.question, split.scenes[item.image]) == item.answer, item
            assert item.answer in split.answers


def test_every_family_and_the_answer_list(splits) -> None:
    test = splits["test"]
    assert {i.family for i in test.items} == set(SMALL.families)
    assert test.answers == answer_list(SMALL.max_count)
    assert len(set(test.answers)) == len(test.answers)
    assert test.images.shape == (len(test.items), 3, 16, 16) and test.images.dtype == np.uint8


def test_answers_are_balanced_and_the_baselines_low(splits) -> None:
    """Per template the balancer keeps every answer within one of the others, so each
    template's most frequent answer is at most 1/k plus a rounding; the global majority is
    "yes" or "no" at half of the yes/no share, which the default weights keep near 18%."""
    for split in splits.values():
        by_template: dict[str, Counter[str]] = {}
        for i in split.items:
            by_template.setdefault(i.template, Counter())[i.answer] += 1
        for template, counts in by_template.items():
            assert max(counts.values()) - min(counts.values()) <= 1 or (
                len(counts) < 2), (template, counts)
    stats = describe({"train": splits["train"], "test": splits["test"]})
    assert stats["majority"] < 0.22
    assert stats["blind"] < 0.45  # text-only ceiling: the answer type, not the answer


def test_same_settings_same_bytes_and_the_test_split_stays_put() -> None:
    a = generate_split(SMALL.model_copy(update={"num_test": 40}), "test")
    b = generate_split(SMALL.model_copy(update={"num_test": 40, "num_train": 7}), "test")
    longer = generate_split(SMALL.model_copy(update={"num_test": 70}), "test")
    assert a.items == b.items and a.images.tobytes() == b.images.tobytes()
    assert longer.items[:40] == a.items
    assert longer.images[:40].tobytes() == a.images.tobytes()
    assert longer.scenes[:40] == a.scenes


def test_cache_round_trip(tmp_path) -> None:
    s = VQASettings(num_train=30, num_val=10, num_test=20, image_size=16, root=str(tmp_path))
    first = load_task("vqa", s)
    assert cache_path("vqa", s).exists()
    again = load_task("vqa", s)
    fresh = load_task("vqa", s, use_cache=False)
    for name in first:
        for other in (again, fresh):
            assert other[name].items == first[name].items
            assert other[name].scenes == first[name].scenes
            assert other[name].images.tobytes() == first[name].images.tobytes()
            assert other[name].answers == first[name].answers
    assert cache_path("vqa", s) != cache_path("vqa", s.model_copy(update={"num_train": 31}))
    elsewhere = cache_path("vqa", s.model_copy(update={"root": "elsewhere"}))
    assert elsewhere.name == cache_path("vqa", s).name  # the folder is not part of the key
