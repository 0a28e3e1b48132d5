"""The adaptive plan in the dry run, through the real API, the CLI and the OpenAPI schema.

The expectations are checked against what the procedure must do, not against its own code:
every arm runs ``initial`` seeds at the first look and never more than ``max``; without
``min_effect`` or futility a comparison under no effect stops early only by a (false)
rejection, so the mean trials are at least ``at_most - P(claim) * (at_most - first look)``;
a difference hundreds of spreads wide is decided at the first look in every experiment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.service.api_client import JSON, make_client

ROOT = Path(__file__).resolve().parents[2]
QUICK = yaml.safe_load((ROOT / "experiments" / "quick.yaml").read_text())
ADAPTIVE = {**QUICK, "seeds": {"initial": 3, "max": 8, "step": 1}}


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        yield c


def dry(client, spec, **params):
    r = client.post("/experiments", json=spec, headers=JSON,
                    params={"dry_run": "true", **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_the_dry_run_of_the_adaptive_quick_spec_shows_its_plan(client) -> None:
    out = dry(client, ADAPTIVE)
    assert out["seeds"] == [0, 1, 2] and out["trials"] == 6
    plan = out["adaptive"]
    assert (plan["initial"], plan["step"], plan["max"]) == (3, 1, 8)
    assert plan["looks"] == [3, 4, 5, 6, 7, 8]
    assert plan["arms"] == 2 and plan["comparisons"] == 1
    assert plan["trials_first_look"] == 6 and plan["trials_at_most"] == 16
    assert plan["stopping"] == {"alpha": 0.05, "spending": "obrien_fleming", "min_effect": None,
                                "futility": None, "higher_is_better": True}
    assert plan["expected"] is None  # nothing said about the difference to detect
    assert "up to 8" in plan["note"]


def test_a_step_that_does_not_divide_still_ends_at_max(client) -> None:
    plan = dry(client, {**ADAPTIVE, "seeds": {"initial": 2, "max": 9, "step": 3}})["adaptive"]
    assert plan["looks"] == [2, 5, 8, 9]


def test_a_fixed_seed_spec_has_no_adaptive_plan(client) -> None:
    assert dry(client, QUICK)["adaptive"] is None


def test_the_stopping_rule_is_the_specs(client) -> None:
    spec = {**ADAPTIVE, "stopping": {"alpha": 0.1, "method": "pocock", "min_effect": 2.0,
                                     "futility": 0.2},
            "metrics": {"primary": "final_loss"}}
    stopping = dry(client, spec)["adaptive"]["stopping"]
    assert stopping == {"alpha": 0.1, "spending": "pocock", "min_effect": 2.0,
                        "futility": 0.2, "higher_is_better": False}


def test_expected_trials_under_no_effect_and_under_the_effect(client) -> None:
    plan = dry(client, ADAPTIVE, delta=5.0, sd=3.0)["adaptive"]
    exp = plan["expected"]
    lo, hi = plan["trials_first_look"], plan["trials_at_most"]
    null, effect = exp["under_no_effect"], exp["under_effect"]
    assert exp["fixed_design_trials"] == hi and exp["sd_source"] == "stated"
    for scenario in (null, effect):
        assert lo <= scenario["expected_trials"] <= hi
        assert scenario["expected_seeds_per_arm"] == pytest.approx(
            scenario["expected_trials"] / plan["arms"])
    # no early stop without a claim: the null runs to max unless it (falsely) rejects
    assert null["expected_trials"] >= hi - null["claims_rate"] * (hi - lo) - 1e-9
    assert null["claims_rate"] < 0.12  # alpha 0.05 with simulation noise (400 experiments)
    # d = 5/3 is detected by 8 seeds most of the time, and earlier than max on average
    assert effect["claims_rate"] > 0.8 and effect["expected_trials"] < null["expected_trials"]


def test_a_huge_effect_is_decided_at_the_first_look(client) -> None:
    exp = dry(client, ADAPTIVE, delta=100.0, sd=0.1)["adaptive"]["expected"]
    assert exp["under_effect"]["expected_trials"] == 6
    assert exp["under_effect"]["claims_rate"] == 1.0


def test_futility_and_min_effect_stop_the_null_earlier(client) -> None:
    plain = dry(client, ADAPTIVE, delta=5.0, sd=3.0)["adaptive"]["expected"]
    spec = {**ADAPTIVE, "stopping": {"min_effect": 4.0, "futility": 0.2}}
    early = dry(client, spec, delta=5.0, sd=3.0)["adaptive"]["expected"]
    assert (early["under_no_effect"]["expected_trials"]
            < plain["under_no_effect"]["expected_trials"])


def test_the_plan_is_the_same_each_time(client) -> None:
    assert dry(client, ADAPTIVE, delta=5.0, sd=3.0) == dry(client, ADAPTIVE, delta=5.0, sd=3.0)


def test_the_openapi_schema_describes_the_plan(client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    dry_run = schemas["DryRunOut"]["properties"]
    assert "adaptive" in dry_run
    plan = schemas["AdaptivePlan"]["properties"]
    for field in ("looks", "stopping", "trials_first_look", "trials_at_most", "expected"):
        assert field in plan
    assert {"under_no_effect", "under_effect"} <= set(schemas["ExpectedTrials"]["properties"])


def test_the_cli_dry_run_prints_the_plan(client, tmp_path, monkeypatch) -> None:
    from service import cli

    monkeypatch.setattr(cli, "_client", lambda _url: client)
    path = tmp_path / "adaptive.yaml"
    path.write_text(yaml.safe_dump(ADAPTIVE))
    result = CliRunner().invoke(cli.app, ["submit", str(path), "--dry-run", "--delta", "5",
                                          "--sd", "3"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["adaptive"]["trials_at_most"] == 16
    assert out["adaptive"]["expected"]["delta"] == 5.0
    assert client.store.counts()["experiments"] == 0
