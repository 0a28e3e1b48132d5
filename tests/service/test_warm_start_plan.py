"""The supervisor computes each distinct warm start of an experiment once, before its arms."""

from __future__ import annotations

from service.job.supervisor import distinct_warm_starts
from service.specs import expand, parse_spec


def _plan(spec: dict) -> dict[int, dict]:
    trials = expand(parse_spec(spec)).trials
    return {i: {"config": v.config.model_dump(mode="json"), "seed": seed}
            for i, (v, seed) in enumerate(trials)}


def test_arms_differing_in_objectives_share_one_warm_start() -> None:
    spec = {"name": "s", "base": {"preset": "tiny"}, "seeds": 3, "design": "factorial",
            "factors": {"ITC": {"path": "objectives.itc.enabled", "levels": [False, True]},
                        "HN": {"path": "objectives.itm.hard_negatives",
                               "levels": [False, True]}}}
    plan = _plan(spec)
    assert len(plan) == 12
    assert len(distinct_warm_starts(plan)) == 1


def test_arms_with_other_encoders_get_their_own_and_cold_arms_none() -> None:
    spec = {"name": "s", "base": {"preset": "tiny"}, "seeds": 2, "design": "explicit",
            "variants": {"albef": {"model.arch": "albef"}, "mome": {"model.arch": "mome"},
                         "cold": {"init.warm_start": False}}}
    starts = distinct_warm_starts(_plan(spec))
    assert sorted(c["model"]["arch"] for c in starts) == ["albef", "mome"]
