"""The generated NLVR-style task against its definition: every label re-judged from the
statement's words on its two scenes, statements shared by several pairs half true and half
false (so consistency is computable and the text alone is at chance), determinism."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.trainer.downstream.tasks.conftest import obj
from tests.trainer.downstream.tasks.truth import CloseCall, nlvr_truth
from trainer.downstream.metrics import nlvr2_accuracy, nlvr2_consistency
from trainer.downstream.tasks import NLVRSettings, describe
from trainer.downstream.tasks.nlvr import generate_split

SMALL = NLVRSettings(num_train=200, num_val=8, num_test=200, image_size=16)
LEFT = (obj("circle", "red", 0.2, 0.2), obj("circle", "red", 0.8, 0.2),
        obj("square", "blue", 0.5, 0.8))
RIGHT = (obj("circle", "blue", 0.3, 0.5), obj("square", "red", 0.75, 0.5))


@pytest.mark.parametrize(("sentence", "truth"), [
    ("the left image has exactly two circles", True),
    ("the right image has exactly two circles", False),
    ("the left image has exactly one square", True),
    ("both images contain a red object", True),
    ("both images contain a red circle", False),
    ("there are more circles in the left image than in the right image", True),
    ("there are more squares in the left image than in the right image", False),
    ("at least one image has a blue object left of a square", True),  # right image
    ("at least one image has a red circle below a blue square", False),
])
def test_hand_made_pairs(sentence: str, truth: bool) -> None:
    assert nlvr_truth(sentence, LEFT, RIGHT) is truth


def test_a_close_call_is_refused() -> None:
    with pytest.raises(CloseCall):  # the circles are level with each other
        nlvr_truth("at least one image has a circle above a red circle", LEFT, RIGHT)


@pytest.fixture(scope="module")
def splits():
    return {name: generate_split(SMALL, name) for name in ("train", "test")}


def test_every_label_follows_from_the_statement_and_both_scenes(splits) -> None:
    for split in splits.values():
        assert split.images.shape[0] == 2 * len(split.items)
        for item in split.items:
            left, right = (split.scenes[k] for k in item.images)
            assert nlvr_truth(item.sentence, left, right) is item.label, item


def test_statements_are_shared_and_balanced(splits) -> None:
    test = splits["test"]
    groups: dict[int, list[bool]] = defaultdict(list)
    texts: dict[int, set[str]] = defaultdict(set)
    for item in test.items:
        groups[item.statement_id].append(item.label)
        texts[item.statement_id].add(item.sentence)
    assert all(len(t) == 1 for t in texts.values())
    assert all(len(v) == SMALL.pairs_per_statement and sum(v) == len(v) // 2
               for v in groups.values())
    assert {i.family for i in test.items} == {"count_side", "both", "more", "relation"}
    stats = describe(splits)
    assert stats["majority"] == 0.5 and stats["blind"] <= 0.55
    # a constant answer is right on half of the pairs and consistent on no statement
    labels = [i.label for i in test.items]
    always = [True] * len(labels)
    assert nlvr2_accuracy(always, labels) == 0.5
    assert nlvr2_consistency(always, labels, [i.statement_id for i in test.items]) == 0.0


def test_deterministic_and_prefix_stable() -> None:
    a = generate_split(SMALL.model_copy(update={"num_test": 30}), "test")
    b = generate_split(SMALL.model_copy(update={"num_test": 50, "num_train": 4}), "test")
    assert b.items[:30] == a.items and b.images[:60].tobytes() == a.images.tobytes()
    assert generate_split(SMALL.model_copy(update={"num_test": 30}), "test").items == a.items
