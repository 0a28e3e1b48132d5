"""The generated grounding task against its definition: each expression picks out exactly its
target (re-derived by ``truth.referent`` from the words), the proposals are the objects'
boxes, a hit is IoU >= 0.5, and generation is deterministic and prefix-stable."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.trainer.downstream.tasks.conftest import obj
from tests.trainer.downstream.tasks.truth import CloseCall, IllPosed, referent
from trainer.data.scenes import EXTENT
from trainer.downstream.metrics import box_iou, grounding_hit
from trainer.downstream.tasks import GroundingSettings, xywh
from trainer.downstream.tasks.grounding import box, generate_split

SMALL = GroundingSettings(num_train=20, num_val=10, num_test=400, image_size=32)
SCENE = (obj("circle", "red", 0.2, 0.2), obj("circle", "red", 0.8, 0.7),
         obj("square", "blue", 0.5, 0.75, size=1))


@pytest.mark.parametrize(("text", "expected"), [
    ("the blue square", 2), ("the large object", 2), ("the red circle on the left", 0),
    ("the circle in the bottom right", 1), ("the circle at the top", 0),
    ("the circle right of the large object", 1), ("the red circle left of the blue square", 0),
])
def test_hand_made_expressions(text: str, expected: int) -> None:
    assert referent(text, SCENE) == expected


@pytest.mark.parametrize(("text", "error"), [
    ("the red circle", IllPosed),  # two red circles
    ("the circle in the middle", IllPosed),  # neither is
    ("the red circle above the square", CloseCall),  # the right one is 0.05 higher than it
])
def test_ambiguous_or_close_expressions_are_refused(text: str, error: type) -> None:
    with pytest.raises(error):
        referent(text, SCENE)


def test_boxes_are_the_bounding_circles_in_pixels() -> None:
    o = obj("circle", "red", 0.25, 0.5)
    e = 0.13 * EXTENT * 64
    assert box(o, 64) == pytest.approx((16 - e, 32 - e, 16 + e, 32 + e))
    assert xywh(box(o, 64)) == pytest.approx((16 - e, 32 - e, 2 * e, 2 * e))


@pytest.fixture(scope="module")
def test_split():
    return generate_split(SMALL, "test")


def test_every_expression_picks_out_exactly_its_target(test_split) -> None:
    for item in test_split.items:
        scene = test_split.scenes[item.image]
        assert len(scene) >= 2 and len(item.proposals) == len(scene)
        assert referent(item.text, scene) == item.target, item
        assert item.proposals == tuple(box(o, SMALL.image_size) for o in scene)


def test_only_the_targets_box_is_a_hit(test_split) -> None:
    """Objects never overlap (their bounding circles keep a gap), so choosing the right
    proposal is a hit and any other is a miss."""
    for item in test_split.items[:100]:
        for k, proposal in enumerate(item.proposals):
            assert grounding_hit(xywh(proposal), item.box) == (k == item.target)
        assert box_iou(item.box, xywh(item.proposals[item.target])) == pytest.approx(1.0)


def test_kinds_are_balanced_and_distractors_make_attributes_insufficient(test_split) -> None:
    kinds = Counter(i.kind for i in test_split.items)
    assert max(kinds.values()) - min(kinds.values()) <= 1
    # relation/region expressions mostly name a noun that alone matches several objects
    needed = [i for i in test_split.items if i.kind != "attribute"]
    shared = sum(
        sum(o.key[:2] == test_split.scenes[i.image][i.target].key[:2]
            for o in test_split.scenes[i.image]) > 1 for i in needed)
    assert shared / len(needed) > 0.4


def test_deterministic_and_prefix_stable() -> None:
    a = generate_split(SMALL.model_copy(update={"num_test": 30}), "test")
    b = generate_split(SMALL.model_copy(update={"num_test": 50, "num_train": 3}), "test")
    again = generate_split(SMALL.model_copy(update={"num_test": 30}), "test")
    assert a.items == again.items and a.images.tobytes() == again.images.tobytes()
    assert b.items[:30] == a.items and b.images[:30].tobytes() == a.images.tobytes()
