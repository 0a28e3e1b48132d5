"""``resources.workers`` in a spec: validated field by field, each worker's request checked
against the cluster's nodes, and a batch that does not split over the workers refused at POST."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service import submit
from service.job.data_parallel import torch_backend, worker_resources
from service.job.schedulable import unfit_reason
from service.specs import RunOptions, SpecError, parse_spec
from service.specs.resources import Resources
from tests.service.api_client import offline_settings

ONE = {"name": "x", "factors": {"ITC": {"path": "objectives.itc.enabled",
                                        "levels": [False, True]}}}


def spec(**fields: Any) -> dict[str, Any]:
    return {**ONE, **fields}


@pytest.mark.parametrize(("resources", "field", "says"), [
    ({"workers": 2.0}, "resources.workers", "integer"),
    ({"workers": "2"}, "resources.workers", "integer"),
    ({"workers": 0}, "resources.workers", "greater than or equal to 1"),
    ({"workers": 257}, "resources.workers", "less than or equal to 256"),
    ({"cpus_per_worker": 1}, "resources.cpus_per_worker", "only with workers > 1"),
    ({"workers": 1, "gpus_per_worker": 0.5}, "resources.gpus_per_worker",
     "only with workers > 1"),
    ({"workers": 2, "cpus_per_worker": 0}, "resources.cpus_per_worker", "greater than 0"),
    ({"workers": 2, "gpus_per_worker": -1}, "resources.gpus_per_worker", "greater than or"),
    ({"workers": 2, "nodes": 2}, "resources.nodes", "Extra inputs"),
])
def test_bad_resources_name_the_field(resources, field, says):
    with pytest.raises(SpecError) as err:
        parse_spec(spec(resources=resources))
    (only,) = err.value.errors
    assert only["field"] == field and says in only["reason"], only


def test_each_worker_reserves_its_own_share_fractions_allowed():
    assert Resources().per_worker() == {"cpus": 1.0, "gpus": 0.0}
    assert Resources().workers == 1 and Resources().trial_cpus == 1.0
    res = Resources(workers=4, cpus_per_worker=0.5, gpus_per_worker=0.25)
    assert res.per_worker() == {"cpus": 0.5, "gpus": 0.25} and res.trial_cpus == 2.0
    # without per-worker values each worker takes what one trial would
    assert Resources(workers=2, cpus=2, gpus=1).per_worker() == {"cpus": 2, "gpus": 1}
    opts = RunOptions.model_validate(spec(resources={"workers": 2, "cpus_per_worker": 1}))
    assert worker_resources(opts.resources.workers, opts.resources.per_worker()) == {
        "workers": 2, "cpus_per_worker": 1, "gpus_per_worker": 0.0}
    assert torch_backend(0.0) == "gloo" and torch_backend(1) == "nccl"
    assert torch_backend(0.5) == "gloo"  # two workers may share the GPU


def test_a_worker_must_fit_on_a_node_not_the_whole_trial():
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": True, "Resources": {"CPU": 2.0}}]
    per_worker = Resources(workers=4, cpus_per_worker=2).per_worker()
    assert unfit_reason(per_worker, nodes) is None
    too_big = Resources(workers=2, cpus_per_worker=3).per_worker()
    assert "CPU 2" in (unfit_reason(too_big, nodes) or "")


def test_a_batch_that_does_not_split_over_the_workers_is_refused_at_post(tmp_path):
    body = spec(base={"preset": "tiny", "set": {"data.batch_size": 30}},
                resources={"workers": 4})
    with pytest.raises(SpecError) as err:
        submit.plan(json.dumps(body).encode(), offline_settings(tmp_path), as_json=True)
    fields = {e["field"] for e in err.value.errors}
    assert fields == {"variants[ITC=off].data.batch_size", "variants[ITC=on].data.batch_size"}
    assert "does not split evenly over resources.workers = 4" in err.value.errors[0]["reason"]
    body["resources"] = {"workers": 3}
    planned = submit.plan(json.dumps(body).encode(), offline_settings(tmp_path), as_json=True)
    assert planned.spec.resources.workers == 3
