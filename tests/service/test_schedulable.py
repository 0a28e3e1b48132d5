"""A trial fits the cluster only if one alive node offers all it asks for (Ray places a trial's
resources on one node): hand-made node lists in the shape ``ray.nodes()`` returns."""

from __future__ import annotations

import time

from service.job.schedulable import unfit_reason, wait_until_fits


def node(alive: bool = True, **resources: float) -> dict[str, object]:
    return {"Alive": alive, "Resources": resources, "NodeManagerAddress": "127.0.0.1"}


CPU_ONLY = [node(CPU=2.0, memory=1e9), node(CPU=8.0)]


def test_cpu_trials_fit_a_cpu_cluster() -> None:
    assert unfit_reason({"cpus": 1.0, "gpus": 0.0}, CPU_ONLY) is None
    assert unfit_reason({"cpus": 8.0, "gpus": 0.0}, CPU_ONLY) is None


def test_a_gpu_trial_on_a_cpu_only_cluster_is_refused_with_the_numbers() -> None:
    reason = unfit_reason({"cpus": 1.0, "gpus": 1.0}, CPU_ONLY)
    assert reason is not None and reason.startswith("unschedulable")
    assert "gpus=1" in reason and "GPU 0" in reason and "2 alive" in reason


def test_one_node_must_hold_all_of_it() -> None:
    split = [node(CPU=4.0, GPU=0.0), node(CPU=0.5, GPU=1.0)]
    assert unfit_reason({"cpus": 1.0, "gpus": 1.0}, split) is not None  # not across nodes
    assert unfit_reason({"cpus": 0.5, "gpus": 1.0}, split) is None
    assert unfit_reason({"cpus": 9.0, "gpus": 0.0}, split) is not None


def test_fractions_and_exact_capacity_fit() -> None:
    assert unfit_reason({"cpus": 0.25, "gpus": 0.5}, [node(CPU=0.25, GPU=0.5)]) is None


def test_dead_nodes_and_an_empty_cluster_offer_nothing() -> None:
    assert unfit_reason({"cpus": 1.0, "gpus": 1.0}, [node(False, CPU=4.0, GPU=8.0)]) is not None
    reason = unfit_reason({"cpus": 1.0, "gpus": 0.0}, [])
    assert reason is not None and "0 alive" in reason and "CPU 0" in reason


def test_waiting_ends_when_a_node_joins_or_after_the_wait() -> None:
    joined = iter([CPU_ONLY, CPU_ONLY, [*CPU_ONLY, node(CPU=4.0, GPU=1.0)]])
    assert wait_until_fits({"cpus": 1.0, "gpus": 1.0}, lambda: next(joined), 5.0, 0.01) is None
    start = time.monotonic()
    reason = wait_until_fits({"cpus": 1.0, "gpus": 1.0}, lambda: CPU_ONLY, 0.2, 0.05)
    assert reason is not None and "waited 0.2 s" in reason
    assert 0.2 <= time.monotonic() - start < 2.0
