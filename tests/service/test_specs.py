"""AblationSpec parsing and expansion: pure, deterministic, readable names, errors naming fields."""

from __future__ import annotations

import json

import pytest

from service.specs import (
    MAX_DEPTH,
    MAX_SEEDS,
    SEED_BOUND,
    SpecError,
    count_variants,
    expand,
    load_document,
    parse_spec,
)

SMALL = {"schedule.steps": 10}


def spec(design: str, **extra):
    return parse_spec({
        "name": "t",
        "design": design,
        "base": {"preset": "tiny", "set": SMALL},
        "factors": {
            "ITC": {"path": "objectives.itc.enabled", "levels": [False, True]},
            "HN": {"path": "objectives.itm.hard_negatives", "levels": [False, True]},
            "MoD": {"levels": [
                {"name": "off", "set": {"objectives.itc.distill": False,
                                        "objectives.mlm.distill": False}},
                {"name": "on", "set": {"objectives.itc.distill": True,
                                       "objectives.mlm.distill": True}},
            ]},
        },
        "seeds": 2,
        **extra,
    })


def names(e):
    return [v.name for v in e.variants]


def test_factorial_every_combination_named_by_levels():
    e = expand(spec("factorial"))
    assert len(e.variants) == 8 == count_variants(e.spec)
    assert names(e)[0] == "ITC=off,HN=off,MoD=off"
    assert names(e)[-1] == "ITC=on,HN=on,MoD=on"
    assert e.baseline == "ITC=off,HN=off,MoD=off"
    assert len(e.trials) == 16 and e.seeds == [0, 1]
    on = e.variant("ITC=on,HN=off,MoD=on").config
    assert on.objectives.itc.enabled and not on.objectives.itm.hard_negatives
    assert on.objectives.itc.distill and on.objectives.mlm.distill


def test_leave_one_out_full_and_without_each():
    e = expand(spec("leave_one_out"))
    assert names(e) == ["full", "w/o ITC", "w/o HN", "w/o MoD"]
    assert e.baseline == "full"
    wo = e.variant("w/o MoD").config
    assert wo.objectives.itc.enabled and wo.objectives.itm.hard_negatives
    assert not wo.objectives.itc.distill and not wo.objectives.mlm.distill
    assert not e.variant("w/o ITC").config.objectives.itc.enabled


def test_add_one_in_is_cumulative_in_listed_order():
    e = expand(spec("add_one_in"))
    assert names(e) == ["baseline", "+ITC", "+ITC+HN", "+ITC+HN+MoD"]
    assert e.baseline == "baseline"
    assert e.variant("+ITC").levels == {"ITC": "on", "HN": "off", "MoD": "off"}
    assert e.variant("+ITC+HN").levels == {"ITC": "on", "HN": "on", "MoD": "off"}
    assert e.variant("+ITC+HN+MoD").config.objectives.mlm.distill


def test_explicit_variants_in_order_first_is_baseline():
    s = parse_spec({
        "name": "x", "design": "explicit", "base": {"set": SMALL},
        "variants": {"ALBEF": {}, "no-ITC": {"objectives.itc.enabled": False}},
        "seeds": [3, 7],
    })
    e = expand(s)
    assert names(e) == ["ALBEF", "no-ITC"] and e.baseline == "ALBEF" and e.seeds == [3, 7]
    assert not e.variant("no-ITC").config.objectives.itc.enabled


def test_expansion_is_pure_and_deterministic():
    a, b = expand(spec("factorial")), expand(spec("factorial"))
    assert names(a) == names(b)
    assert [v.config.config_hash() for v in a.variants] == [
        v.config.config_hash() for v in b.variants
    ]
    assert len({v.config.config_hash() for v in a.variants}) == 8


def test_value_labels_and_explicit_level_names():
    s = parse_spec({
        "name": "w", "base": {"set": SMALL},
        "factors": {"W": {"path": "objectives.mlm.weight",
                          "levels": [0.5, {"name": "one", "value": 1.0}]}},
    })
    assert names(expand(s)) == ["W=0.5", "W=one"]


def test_baseline_must_name_a_variant():
    with pytest.raises(SpecError) as err:
        expand(spec("add_one_in", baseline="nope"))
    assert err.value.errors[0]["field"] == "baseline"
    assert "+ITC" in err.value.errors[0]["reason"]
    assert expand(spec("add_one_in", baseline="+ITC")).baseline == "+ITC"


def test_invalid_variant_names_variant_and_field():
    s = parse_spec({
        "name": "bad", "base": {"set": SMALL},
        "factors": {"Q": {"path": "objectives.itc.queue_size", "levels": [16, 0]}},
    })
    with pytest.raises(SpecError) as err:
        expand(s)
    e = err.value.errors[0]
    assert e["field"] == "variants[Q=0].objectives.itc.queue_size"
    assert "Q=0" in e["reason"]


def test_every_objective_off_is_an_invalid_variant():
    s = parse_spec({
        "name": "bad", "design": "explicit", "base": {"set": SMALL},
        "variants": {"none": {"objectives.itc.enabled": False, "objectives.itm.enabled": False,
                              "objectives.mlm.enabled": False}},
    })
    with pytest.raises(SpecError, match="none"):
        expand(s)


def test_limit_rejects_before_building_and_says_how_many():
    with pytest.raises(SpecError) as err:
        expand(spec("factorial"), max_variants=4)
    assert err.value.errors[0]["field"] == "factors"
    assert "8 variants" in err.value.errors[0]["reason"]
    with pytest.raises(SpecError) as err:
        expand(spec("factorial"), max_trials=10)
    assert "16 trials" in err.value.errors[0]["reason"]


def test_budget_total_steps():
    with pytest.raises(SpecError) as err:
        expand(spec("leave_one_out", budget={"max_total_steps": 50}))
    assert err.value.errors[0]["field"] == "budget.max_total_steps"
    assert "80 steps" in err.value.errors[0]["reason"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "x", "colour": 1, "factors": {"A": {"path": "a", "levels": [1, 2]}}},
         "colour"),
        ({"name": "x", "seeds": "many", "factors": {"A": {"path": "a", "levels": [1, 2]}}},
         "seeds"),
        ({"name": "x", "factors": {}}, "factors"),
        ({"name": "x", "factors": {"A": {"path": "a", "levels": [1]}}}, "factors.A.levels"),
        ({"name": "x", "factors": {"A": {"levels": [1, 2]}}}, "factors.A.levels"),
        ({"name": "x", "design": "explicit"}, "variants"),
        ({"name": "x", "seeds": [1, 1], "factors": {"A": {"path": "a", "levels": [1, 2]}}},
         "seeds"),
        ({"name": "x", "resources": {"cpus": 0}, "factors": {"A": {"path": "a",
                                                                    "levels": [1, 2]}}},
         "resources.cpus"),
    ],
)
def test_bad_specs_name_the_field(data, field):
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert err.value.errors[0]["field"] == field


def test_unknown_config_path_is_named():
    s = parse_spec({"name": "x", "base": {"set": SMALL},
                    "factors": {"A": {"path": "objectives.itcc.enabled", "levels": [0, 1]}}})
    with pytest.raises(SpecError) as err:
        expand(s)
    assert "objectives.itcc" in err.value.errors[0]["field"]


def test_yaml_text_is_accepted():
    s = parse_spec("name: y\nfactors:\n  ITC: {path: objectives.itc.enabled, levels: [0, 1]}\n"
                   "seeds: 1\n")
    assert s.seeds == [0]


# ---- bounded parsing (the HTTP side: tests/service/test_api_bounded.py) ---------------------

ONE_FACTOR = "factors:\n  A: {path: objectives.itc.enabled, levels: [false, true]}\n"


def test_yaml_aliases_are_refused_even_harmless_ones():
    with pytest.raises(SpecError) as err:
        parse_spec("name: &n y\ndescription: *n\n" + ONE_FACTOR)
    assert err.value.errors == [{"field": "<body>", "reason": err.value.errors[0]["reason"]}]
    assert "alias" in err.value.errors[0]["reason"]


@pytest.mark.parametrize("as_json", [False, True], ids=["yaml", "json"])
def test_nesting_is_bounded_at_max_depth(as_json):
    def spec(depth: int) -> str:  # the root mapping is level 1, the description's lists the rest
        nested = "[" * (depth - 1) + "]" * (depth - 1)
        return json.dumps({"name": "x"})[:-1] + f', "description": {nested}}}'

    ok = load_document(spec(MAX_DEPTH), as_json=as_json)
    assert ok["name"] == "x"
    with pytest.raises(SpecError) as err:
        load_document(spec(MAX_DEPTH + 1), as_json=as_json)
    assert err.value.errors[0] == {"field": "<body>",
                                   "reason": f"nested deeper than {MAX_DEPTH} levels"}


def test_json_is_parsed_as_json():
    text = '{\n\t"name": "x",\n\t"' + "k" * 1100 + '": 1\n}'
    assert len(load_document(text, as_json=True)) == 2
    with pytest.raises(SpecError):  # what YAML 1.1 makes of it
        load_document(text)


@pytest.mark.parametrize(
    ("seeds", "says"),
    [(0, "between 1 and"), (MAX_SEEDS + 1, "between 1 and"), (10**9, "between 1 and"),
     (list(range(MAX_SEEDS + 1)), "at most"), ([-1], "seeds[0]"), ([3, SEED_BOUND], "seeds[1]"),
     ([2**63], "seeds[0]"), ([], "at least one")],
)
def test_seed_counts_and_values_are_bounded(seeds, says):
    with pytest.raises(SpecError) as err:
        parse_spec({"name": "x", "seeds": seeds, "factors": {"A": {"path": "a",
                                                                   "levels": [1, 2]}}})
    assert err.value.errors[0]["field"] == "seeds" and says in err.value.errors[0]["reason"]


def test_the_extreme_seeds_are_accepted():
    s = parse_spec({"name": "x", "seeds": [0, SEED_BOUND - 1], "factors": {"A": {
        "path": "a", "levels": [1, 2]}}})
    assert s.seeds == [0, SEED_BOUND - 1]
    assert parse_spec({"name": "x", "seeds": MAX_SEEDS, "factors": {"A": {
        "path": "a", "levels": [1, 2]}}}).seeds[-1] == MAX_SEEDS - 1
