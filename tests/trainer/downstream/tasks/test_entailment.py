"""The generated entailment task against its definition: entailment is a clearly true
caption, contradiction a clearly false one, neutral a close call or an unshown property of
an object that is there (re-judged by ``truth.caption_truth``); balance per wording."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.trainer.downstream.tasks.conftest import obj
from tests.trainer.downstream.tasks.truth import caption_truth
from trainer.downstream.metrics import VE_LABELS
from trainer.downstream.tasks import VESettings, describe
from trainer.downstream.tasks.entailment import UNSHOWN, generate_split, text_group

SMALL = VESettings(num_train=300, num_val=10, num_test=300, image_size=16)
SCENE = (obj("circle", "red", 0.2, 0.2), obj("square", "blue", 0.25, 0.8))


def judge(sentence: str, scene) -> str:
    """The label the definition gives."""
    prop = next((p for p in UNSHOWN if sentence.endswith(" " + p)), None)
    if prop is not None:  # existence settles contradiction; the property is never shown
        there = caption_truth(sentence.removesuffix(" " + prop), scene)
        assert there != 0
        return "neutral" if there == 1 else "contradiction"
    return {1: "entailment", 0: "neutral", -1: "contradiction"}[caption_truth(sentence, scene)]


@pytest.mark.parametrize(("sentence", "label"), [
    ("a red circle above a blue square", "entailment"),
    ("a red circle below a blue square", "contradiction"),
    ("a red circle to the left of a blue square", "neutral"),  # dx = 0.05: too close
    ("there is a red circle made of wood", "neutral"),
    ("there is a green circle made of wood", "contradiction"),
    ("two shapes: a red circle and a blue square", "entailment"),
    ("a blue square in the bottom left", "entailment"),
])
def test_hand_made_hypotheses(sentence: str, label: str) -> None:
    assert judge(sentence, SCENE) == label


@pytest.fixture(scope="module")
def splits():
    return {name: generate_split(SMALL, name) for name in ("train", "test")}


def test_every_label_follows_from_the_definition(splits) -> None:
    for split in splits.values():
        for item in split.items:
            assert judge(item.sentence, split.scenes[item.image]) == item.label, item


def test_classes_balanced_within_each_wording(splits) -> None:
    test = splits["test"]
    by_group: dict[str, Counter[str]] = {}
    for i in test.items:
        by_group.setdefault(text_group(i.sentence), Counter())[i.label] += 1
    assert set(by_group["rel"]) == set(VE_LABELS) == set(by_group["located"])
    assert set(by_group["unshown"]) == {"neutral", "contradiction"}
    for counts in by_group.values():
        assert max(counts.values()) - min(counts.values()) <= 1
    stats = describe(splits)
    assert max(stats["balance"].values()) < 0.42 and min(stats["balance"].values()) > 0.27
    assert stats["blind"] < 0.45


def test_contradictions_include_minimal_edits_and_partner_captions(splits) -> None:
    kinds = Counter(i.kind for i in splits["test"].items if i.label == "contradiction")
    assert {"corrupt", "variant", "absent"} <= set(kinds)


def test_deterministic_and_prefix_stable() -> None:
    a = generate_split(SMALL.model_copy(update={"num_test": 30}), "test")
    b = generate_split(SMALL.model_copy(update={"num_test": 45, "num_train": 5}), "test")
    assert b.items[:30] == a.items and b.images[:30].tobytes() == a.images.tobytes()
    assert generate_split(SMALL.model_copy(update={"num_test": 30}), "test").items == a.items
