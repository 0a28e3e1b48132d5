"""The spec's JSON Schema says what ``AblationSpec`` accepts: each rule a validator enforces is
refused by the schema too, and the schema refuses nothing the model accepts (a client that
trusts the schema is never wrong about a spec, only less complete: some rules need the config).

Each case goes through both: ``jsonschema`` (Draft 2020-12, OpenAPI 3.1's dialect) over the
schema the app publishes, and ``AblationSpec.model_validate``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from service import submit
from service.specs import AblationSpec, SpecError
from service.specs.schema_rules import EXAMPLE
from tests.service.api_client import make_client, offline_settings

ITC = {"path": "objectives.itc.enabled", "levels": [False, True]}
BASE = {"name": "x", "factors": {"ITC": ITC}}
SET_LEVELS = {"levels": [{"set": {"objectives.itc.enabled": False}},
                         {"name": "on", "set": {"objectives.itc.enabled": True}}]}


def spec(**fields: Any) -> dict[str, Any]:
    return {**BASE, **fields}


def explicit(variants: Any) -> dict[str, Any]:
    return {"name": "x", "design": "explicit", "variants": variants}


ACCEPTED = {
    "the example": EXAMPLE,
    "plain levels with a path": BASE,
    "set levels without a path": spec(factors={"F": SET_LEVELS}),
    "mixed levels with a path": spec(factors={"F": {"path": "p", "levels": [
        0.1, {"value": 0.2}, {"name": "both", "set": {"a": 1}}]}}),
    "a level named at the label limit": spec(factors={"F": {"path": "p", "levels": [
        1, {"name": "n" * 200, "value": 2}]}}),
    "value with a null set": spec(factors={"F": {"path": "p", "levels": [
        {"value": 1, "set": None}, 2]}}),
    "explicit variants as a list": explicit([{"name": "a"}, {"name": "b", "set": {"x": 1}}]),
    "explicit variants as a mapping": explicit({"a": {"x": 1}, "b": None, "c": {}, "d": 0,
                                                "e": "", "f": [], "g": False}),
    "leave one out": spec(design="leave_one_out"),
    "every metric kind": spec(metrics={"primary": "final_loss_itc",
                                       "reported": ["final_loss", "i2t_r10", "mean_recall"]}),
    "no preset": spec(base={"preset": None}),
    "seeds at their bounds": spec(seeds=[0, 2**31 - 1]),
    "the largest seed count": spec(seeds=10_000),
    "whole resources": spec(resources={"cpus": 2, "gpus": 0}),
    "data-parallel workers": spec(resources={"workers": 2, "cpus_per_worker": 1,
                                             "gpus_per_worker": 0.5}),
    "workers without per-worker resources": spec(resources={"workers": 4}),
}

REFUSED = {
    "no factors": {"name": "x"},
    "empty factors": spec(factors={}),
    "explicit without variants": {"name": "x", "design": "explicit"},
    "explicit with an empty mapping": explicit({}),
    "explicit with factors": {**explicit([{"name": "a"}]), "factors": {"ITC": ITC}},
    "a factorial with variants": spec(variants=[{"name": "a"}]),
    "a variant mapping to a string": explicit({"a": "x"}),
    "an unnamed variant": explicit({"": {}}),
    "a level with value and set": spec(factors={"F": {"path": "p", "levels": [
        {"value": 1, "set": {"a": 1}}, 2]}}),
    "a level with a null set only": spec(factors={"F": {"levels": [{"set": None},
                                                                   {"set": {"a": 1}}]}}),
    "a level with a name only": spec(factors={"F": {"path": "p", "levels": [{"name": "a"}, 1]}}),
    "a plain level without a path": spec(factors={"F": {"levels": [False, {"set": {"a": 1}}]}}),
    "a value level with an empty path": spec(factors={"F": {"path": "", "levels": [
        {"value": 1}, {"value": 2}]}}),
    "one level": spec(factors={"F": {"path": "p", "levels": [1]}}),
    "a level name past the limit": spec(factors={"F": {"path": "p", "levels": [
        1, {"name": "n" * 201, "value": 2}]}}),
    "an empty level name": spec(factors={"F": {"path": "p", "levels": [
        1, {"name": "", "value": 2}]}}),
    "an unknown primary metric": spec(metrics={"primary": "accuracy"}),
    "an unknown reported metric": spec(metrics={"reported": ["mean_recall", "r@1"]}),
    "an unknown design": spec(design="fractional"),
    "a seed count of 0": spec(seeds=0),
    "a seed count past 10000": spec(seeds=10_001),
    "no seeds": spec(seeds=[]),
    "a negative seed": spec(seeds=[-1]),
    "a seed of 2**31": spec(seeds=[2**31]),
    "a repeated seed": spec(seeds=[1, 1]),
    "a boolean seed count": spec(seeds=True),
    "a seed as text": spec(seeds=["1"]),
    "a number as rerun": spec(rerun=0),
    "cpus as text": spec(resources={"cpus": "1"}),
    "no cpus": spec(resources={"cpus": 0}),
    "no concurrency": spec(max_concurrent_trials=0),
    "no workers": spec(resources={"workers": 0}),
    "per-worker cpus with one worker": spec(resources={"cpus_per_worker": 1}),
    "per-worker gpus with workers 1": spec(resources={"workers": 1, "gpus_per_worker": 1}),
    "no cpus per worker": spec(resources={"workers": 2, "cpus_per_worker": 0}),
    "an empty name": spec(name=""),
    "a name past 200 characters": spec(name="n" * 201),
    "an unknown field": spec(colour="red"),
}

BEYOND_THE_SCHEMA = {  # said in the descriptions: the schema cannot compare labels or names
    "two levels with one label": spec(factors={"F": {"path": "p", "levels": [True, "on"]}}),
    "a plain label past the limit": spec(factors={"F": {"path": "p", "levels": [1, "v" * 201]}}),
    "two variants with one name": explicit([{"name": "a"}, {"name": "a", "set": {"x": 1}}]),
}


@pytest.fixture(scope="module")
def schema() -> Draft202012Validator:
    published = AblationSpec.model_json_schema()
    Draft202012Validator.check_schema(published)
    return Draft202012Validator(published)


def model_accepts(data: dict[str, Any]) -> bool:
    try:
        AblationSpec.model_validate(data)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_what_the_model_accepts_the_schema_accepts(schema, case):
    assert model_accepts(ACCEPTED[case])
    assert not list(schema.iter_errors(ACCEPTED[case])), case


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_a_rule_refuses_the_schema_refuses(schema, case):
    assert not model_accepts(REFUSED[case])
    assert list(schema.iter_errors(REFUSED[case])), case


@pytest.mark.parametrize("case", list(BEYOND_THE_SCHEMA))
def test_rules_beyond_the_schema_are_refused_by_the_model(schema, case):
    assert not model_accepts(BEYOND_THE_SCHEMA[case])
    assert not list(schema.iter_errors(BEYOND_THE_SCHEMA[case])), case


def test_an_unknown_preset_is_refused_by_both(schema, tmp_path):
    """The expansion refuses it (``build_config``), not the model; the schema lists presets."""
    data = spec(base={"preset": "huge"})
    assert list(schema.iter_errors(data))
    with pytest.raises(SpecError) as refused:
        submit.plan(json.dumps(data).encode(), offline_settings(tmp_path), as_json=True)
    assert "preset" in str(refused.value)


def test_the_published_schema_is_the_models(tmp_path):
    with make_client(tmp_path) as client:
        published = client.get("/openapi.json").json()["components"]["schemas"]
    spec_schema = published["AblationSpec"]
    assert spec_schema["examples"] == [EXAMPLE]
    assert "anyOf" in spec_schema and "anyOf" in published["Level"]
    assert "anyOf" in published["Factor"]
