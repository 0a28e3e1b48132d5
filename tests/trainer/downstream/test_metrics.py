"""Downstream metrics against numbers worked out by hand from the tasks' definitions.

VQA: accuracy = mean over the leave-one-annotator-out subsets of min(1, matches / 3). With 10
answers of which m match the prediction, 10 - m subsets drop a non-match (m matches left) and
m subsets drop a match (m - 1 left).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from trainer.downstream.metrics import (
    MinimalPairScores,
    box_iou,
    grounding_accuracy,
    grounding_hit,
    minimal_pair_passes,
    minimal_pair_scores,
    nlvr2_accuracy,
    nlvr2_consistency,
    ve_accuracy,
    vqa_accuracy,
    vqa_dataset_accuracy,
)
from trainer.downstream.vqa_answers import normalize_answer


def ten(matching: int, answer: str = "2", other: str = "3") -> list[str]:
    return [answer] * matching + [other] * (10 - matching)


# ---- VQA accuracy ----------------------------------------------------------------------------


@pytest.mark.parametrize(("matching", "expected"), [
    (0, 0.0),
    (1, 0.3),   # 9 subsets keep the match: 1/3 each; 1 drops it: 0 -> 9 * (1/3) / 10
    (2, 0.6),   # (8 * 2/3 + 2 * 1/3) / 10
    (3, 0.9),   # (7 * 1 + 3 * 2/3) / 10
    (4, 1.0),   # every subset keeps at least 3 matches
    (10, 1.0),
])
def test_vqa_accuracy_leave_one_out(matching: int, expected: float) -> None:
    assert vqa_accuracy("2", ten(matching)) == pytest.approx(expected)


@pytest.mark.parametrize(("prediction", "answer"), [
    ("Two", "2"),
    ("two", "2"),
    ("a dog", "dog"),
    ("the dog", "dog"),
    ("dont", "don't"),
    ("yes.", "yes"),
    ("1,000", "1000"),
    ("  2\n", "2"),
])
def test_vqa_accuracy_compares_normalised_answers(prediction: str, answer: str) -> None:
    # 3 of 10 annotators gave ``answer``: 0.9 when the prediction normalises to it
    assert vqa_accuracy(prediction, ten(3, answer=answer, other="zebra")) == pytest.approx(0.9)
    # and the same the other way round: annotators wrote the unnormalised form
    assert vqa_accuracy(answer, ten(3, answer=prediction, other="zebra")) == pytest.approx(0.9)


def test_vqa_unanimous_answers_are_compared_unnormalised_as_the_official_script() -> None:
    yes = ["yes"] * 10
    assert vqa_accuracy("yes", yes) == 1.0
    assert vqa_accuracy("Yes", yes) == 0.0
    assert vqa_accuracy("yes.", yes) == 0.0
    assert vqa_accuracy(" yes\t", yes) == 1.0  # whitespace is cleaned in every case
    assert vqa_accuracy("Yes", yes, normalize_unanimous=True) == 1.0
    # one dissenting annotator switches normalisation on: 9 "yes" -> every subset has >= 8
    assert vqa_accuracy("Yes", ["yes"] * 9 + ["no"]) == 1.0


def test_vqa_other_than_ten_answers() -> None:
    # 3 answers, 2 match: subsets keep 1, 1 and 2 matches -> (1/3 + 1/3 + 2/3) / 3 = 4/9
    assert vqa_accuracy("red", ["red", "red", "blue"]) == pytest.approx(4 / 9)
    # 12 answers, 3 match: 9 subsets keep 3 (1.0), 3 keep 2 (2/3) -> (9 + 2) / 12
    assert vqa_accuracy("2", ["2"] * 3 + ["3"] * 9) == pytest.approx(11 / 12)
    # one answer: exact match after normalisation
    assert vqa_accuracy("the dog", ["Dog"]) == 1.0
    assert vqa_accuracy("cat", ["dog"]) == 0.0
    with pytest.raises(ValueError, match="at least one human answer"):
        vqa_accuracy("dog", [])
    with pytest.raises(TypeError):
        vqa_accuracy("dog", "dog")


def test_vqa_dataset_accuracy_is_the_mean_over_questions() -> None:
    assert vqa_dataset_accuracy(["2", "2"], [ten(3), ten(1)]) == pytest.approx((0.9 + 0.3) / 2)
    with pytest.raises(ValueError, match="empty"):
        vqa_dataset_accuracy([], [])
    with pytest.raises(ValueError, match="1 predictions for 2"):
        vqa_dataset_accuracy(["2"], [ten(3), ten(1)])


@pytest.mark.parametrize(("raw", "expected"), [
    ("Two", "2"),
    ("none", "0"),
    ("eleven", "eleven"),          # only zero..ten (and none) are mapped
    ("The Cat!", "cat"),           # "!" touches no space: becomes a space; "the" dropped
    ("an apple", "apple"),
    ("dont", "don't"),
    ("Im", "im"),                  # lower-cased before the table, whose key is "Im"
    ("yes.", "yes"),
    ("3.5", "3.5"),                # a period before a digit stays
    ("1,000", "1000"),             # digit-comma-digit: marks deleted, not spaced
    ("1,000 - 2", "1000 2"),       # ... every mark, the dash too
    ("red,blue", "red blue"),      # a comma between letters becomes a space
    ("red, blue", "red blue"),     # a comma before a space is deleted
    ("x-ray", "x ray"),
    ("t-shirt, red", "t shirt red"),
    ("left/right", "left right"),
    ("it's", "it's"),              # apostrophes are not punctuation here
])
def test_official_normalisation(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


# ---- NLVR2 -----------------------------------------------------------------------------------


def test_nlvr2_accuracy() -> None:
    assert nlvr2_accuracy([True, False, True, True], [True, True, True, False]) == 0.5
    assert nlvr2_accuracy(np.array([1, 0]), np.array([True, False])) == 1.0


def test_nlvr2_consistency_needs_every_example_of_a_statement_right() -> None:
    labels = [True, False, True, True, False]
    preds = [True, False, True, False, False]  # s2's second example is wrong
    keys = ["s1", "s1", "s2", "s2", "s3"]
    assert nlvr2_consistency(preds, labels, keys) == pytest.approx(2 / 3)
    assert nlvr2_accuracy(preds, labels) == pytest.approx(4 / 5)


def test_nlvr2_consistency_counts_each_statement_once() -> None:
    # four right examples of one statement, one wrong example of another: 1 of 2 statements
    keys = ["a", "a", "b", "a", "a"]
    labels = [True] * 5
    preds = [True, True, False, True, True]
    assert nlvr2_consistency(preds, labels, keys) == 0.5
    # examples of one statement need not be adjacent; any hashable key works
    assert nlvr2_consistency([True, True, False], [True, False, False], [(1,), (2,), (1,)]) == 0.5


def test_nlvr2_a_constant_answer_is_never_consistent_on_a_statement_with_both_labels() -> None:
    # the same sentence true of one pair and false of the other: predicting the same truth
    # value for both ties the pairs together and gets exactly one of them wrong
    labels = [True, False]
    for constant in (True, False):
        assert nlvr2_accuracy([constant] * 2, labels) == 0.5
        assert nlvr2_consistency([constant] * 2, labels, ["s", "s"]) == 0.0


def test_nlvr2_refuses_empty_and_mismatched_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        nlvr2_accuracy([], [])
    with pytest.raises(ValueError, match="empty"):
        nlvr2_consistency([], [], [])
    with pytest.raises(ValueError, match="statement keys"):
        nlvr2_consistency([True, True], [True, True], ["s"])
    with pytest.raises(ValueError, match="2 predictions for 1"):
        nlvr2_accuracy([True, False], [True])
    with pytest.raises(ValueError, match="booleans"):
        nlvr2_accuracy(np.array([0.7, 0.2]), [True, False])


# ---- SNLI-VE ---------------------------------------------------------------------------------


def test_ve_accuracy() -> None:
    preds = ["entailment", "neutral", "contradiction"]
    labels = ["entailment", "contradiction", "contradiction"]
    assert ve_accuracy(preds, labels) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="unknown label"):
        ve_accuracy(["entails"], ["entailment"])
    with pytest.raises(ValueError, match="empty"):
        ve_accuracy([], [])


# ---- IoU and grounding -----------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "expected"), [
    ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
    ([0, 0, 10, 10], [20, 20, 5, 5], 0.0),
    ([0, 0, 10, 10], [10, 0, 10, 10], 0.0),          # touching edges
    ([0, 0, 10, 10], [10, 10, 5, 5], 0.0),           # touching corners
    ([0, 0, 10, 10], [5, 0, 10, 10], 50 / 150),      # half of each overlaps
    ([0, 0, 10, 10], [2, 2, 5, 5], 25 / 100),        # one inside the other
    ([0, 0, 10, 10], [0, 0, 10, 5], 50 / 100),
    ([0.5, 0.5, 2, 2], [1.5, 0.5, 2, 2], 2 / 6),     # fractional coordinates
    ([0, 0, 4, 6], [2, 3, 4, 6], 6 / 42),            # corner overlap 2 x 3
])
def test_box_iou(a: list[float], b: list[float], expected: float) -> None:
    assert box_iou(a, b) == pytest.approx(expected)
    assert box_iou(b, a) == pytest.approx(expected)


def test_grounding_threshold_is_inclusive() -> None:
    true = [0, 0, 10, 10]
    assert box_iou([0, 0, 10, 5], true) == 0.5
    assert grounding_hit([0, 0, 10, 5], true)
    assert not grounding_hit([0, 0, 10, 4.9], true)
    assert not grounding_hit([0, 0, 10, 5], true, threshold=0.6)
    hits = [[0, 0, 10, 10], [20, 20, 5, 5], [0, 0, 10, 6]]
    assert grounding_accuracy(hits, [true] * 3) == pytest.approx(2 / 3)


def test_box_iou_refuses_degenerate_boxes() -> None:
    for bad in ([0, 0, 0, 10], [0, 0, 10, -1], [0, 0, 10], [0, math.nan, 1, 1]):
        with pytest.raises(ValueError, match="box"):
            box_iou(bad, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="empty"):
        grounding_accuracy([], [])


# ---- Winoground-style minimal pairs ----------------------------------------------------------

PERFECT = [[2.0, 0.0], [0.0, 2.0]]
TEXT_ONLY = [[0.5, 0.9], [0.1, 1.0]]   # captions ranked right per image; c0 prefers i1
IMAGE_ONLY = [[0.5, 0.1], [0.9, 1.0]]  # images ranked right per caption; i0 prefers c1
TIE = [[1.0, 1.0], [0.0, 1.0]]         # s00 == s01 and s11 == s01: both tests fail


def test_minimal_pair_passes() -> None:
    text, image, group = minimal_pair_passes([PERFECT, TEXT_ONLY, IMAGE_ONLY, TIE])
    assert text.tolist() == [True, True, False, False]
    assert image.tolist() == [True, False, True, False]
    assert group.tolist() == [True, False, False, False]


def test_minimal_pair_scores_and_ties() -> None:
    assert minimal_pair_scores([PERFECT, TEXT_ONLY, IMAGE_ONLY, TIE]) == MinimalPairScores(
        text=0.5, image=0.5, group=0.25
    )
    assert minimal_pair_scores([[3.0, 3.0], [3.0, 3.0]]) == MinimalPairScores(0.0, 0.0, 0.0)
    assert minimal_pair_scores(PERFECT) == MinimalPairScores(1.0, 1.0, 1.0)


def test_minimal_pair_chance_levels() -> None:
    # every ordering of four distinct scores, equally likely: 1/4, 1/4 and 1/6 pass
    groups = [np.array(p, dtype=float).reshape(2, 2) for p in itertools.permutations(range(4))]
    scores = minimal_pair_scores(np.stack(groups))
    assert (scores.text, scores.image, scores.group) == pytest.approx((1 / 4, 1 / 4, 1 / 6))


def test_minimal_pair_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        minimal_pair_scores(np.zeros((0, 2, 2)))
    with pytest.raises(ValueError, match=r"\[G, 2, 2\]"):
        minimal_pair_scores(np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="finite"):
        minimal_pair_scores([[math.nan, 0.0], [0.0, 1.0]])
