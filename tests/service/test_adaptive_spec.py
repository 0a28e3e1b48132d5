"""Adaptive seeds in a spec: what is accepted, what is refused (naming the field), and what the
expansion plans (the initial seeds now, the trial limits checked against max)."""

from __future__ import annotations

import pytest

from service.specs import AblationSpec, SpecError, expand, parse_spec, spec_to_json

ITC = {"ITC": {"path": "objectives.itc.enabled", "levels": [False, True]}}


def spec(**extra: object) -> dict[str, object]:
    return {"name": "adaptive", "factors": ITC, **extra}


def refused(body: dict[str, object]) -> list[dict[str, str]]:
    import json

    with pytest.raises(SpecError) as err:
        parse_spec(json.dumps(body).encode(), as_json=True)
    return err.value.errors


def test_adaptive_seeds_plan_the_initial_seeds_and_keep_the_rule() -> None:
    s = AblationSpec.model_validate(spec(seeds={"initial": 3, "max": 10},
                                         stopping={"alpha": 0.05, "method": "pocock",
                                                   "min_effect": 1.5}))
    assert s.first_seeds == [0, 1, 2] and s.max_seeds == 10
    assert s.adaptive is not None and s.adaptive.schedule().looks() == tuple(range(3, 11))
    assert s.stopping is not None and s.stopping.rule(True).spending == "pocock"
    assert s.stopping.rule(True).futility is None  # off unless asked for
    with_futility = AblationSpec.model_validate(spec(seeds={"initial": 3, "max": 10},
                                                     stopping={"futility": 0.1}))
    assert with_futility.stopping is not None
    assert with_futility.stopping.rule(False).futility == 0.1
    e = expand(s, max_variants=8, max_trials=20)
    assert e.seeds == [0, 1, 2] and len(e.trials) == 6
    stored = spec_to_json(s)
    assert stored["seeds"] == {"initial": 3, "max": 10}
    assert AblationSpec.model_validate(stored).model_dump() == s.model_dump()


def test_a_fixed_design_is_unchanged() -> None:
    s = AblationSpec.model_validate(spec(seeds=4))
    assert s.seeds == [0, 1, 2, 3] and s.adaptive is None and s.first_seeds == [0, 1, 2, 3]


@pytest.mark.parametrize(("seeds", "stopping", "field", "says"), [
    ({"initial": 5, "max": 3}, None, "seeds", "must not exceed max"),
    ({"initial": 1, "max": 3}, None, "seeds.initial", "greater than or equal to 2"),
    ({"initial": 3}, None, "seeds.max", "required"),
    ({"initial": 3, "max": 10, "every": 2}, None, "seeds.every", "Extra inputs"),
    ({"initial": 2, "max": 100, "step": 1}, None, "seeds", "at most 20"),
    ({"initial": 3, "max": 101}, None, "seeds.max", "less than or equal to 100"),
    (3, {"alpha": 0.05}, "stopping", "only adaptive seeds"),
    ({"initial": 3, "max": 5}, {"alpha": 0.0}, "stopping.alpha", "greater than 0"),
    ({"initial": 3, "max": 5}, {"min_effect": -1}, "stopping.min_effect", "greater than 0"),
    ({"initial": 3, "max": 5}, {"method": "haybittle"}, "stopping.method", "obrien_fleming"),
    ({"initial": 3, "max": 5}, {"futility": 1.0}, "stopping.futility", "less than 1"),
    ({"initial": 3, "max": 5}, {"futility": 0}, "stopping.futility", "greater than 0"),
])
def test_bad_adaptive_specs_name_the_field(seeds, stopping, field, says) -> None:
    body = spec(seeds=seeds, **({"stopping": stopping} if stopping else {}))
    errors = refused(body)
    assert any(e["field"] == field and says in e["reason"] for e in errors), errors


def test_trial_limits_count_the_most_seeds_an_arm_may_run() -> None:
    s = AblationSpec.model_validate(spec(seeds={"initial": 3, "max": 12}))
    with pytest.raises(SpecError) as err:
        expand(s, max_variants=8, max_trials=20)
    (e,) = err.value.errors
    assert e["field"] == "seeds" and "2 variants x at most 12 seeds = 24 trials" in e["reason"]
