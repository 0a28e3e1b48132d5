"""What a trial costs, and arms matched on a budget instead of steps.

The FLOPs reference is Kaplan et al. (2020): training a dense network costs about 6 x (matmul
parameters) x (tokens) FLOPs per sample (2 forward, 4 backward), which for short sequences
leaves out only the attention products."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from tests.trainer.helpers import VOCAB, random_batch, tiny
from tests.trainer.test_fingerprints import cfg as small
from trainer.config import ConfigError, build_config
from trainer.cost import step_flops, steps_for_flops
from trainer.loop import Trainer
from trainer.model.pretrainer import Pretrainer


def _matmul_params(module: torch.nn.Module) -> int:
    """Weights used in matmuls: matrices, less embedding tables (looked up, not multiplied)."""
    return sum(p.numel() for n, p in module.named_parameters()
               if p.dim() >= 2 and not any(e in n for e in ("word_emb", "position", "token_type")))


def test_itc_step_costs_six_n_d() -> None:
    cfg = tiny(**{"objectives.itm.enabled": False, "objectives.mlm.enabled": False,
                  "objectives.itc.queue": False, "objectives.itc.distill": False})
    pt = Pretrainer(cfg, VOCAB)
    batch, length = 6, 12
    patches = (32 // cfg.model.vision.patch_size) ** 2 + 1  # + [CLS]
    reference = 6 * batch * (_matmul_params(pt.model.vision) * patches
                             + _matmul_params(pt.model.text) * length)
    flops = step_flops(pt, [random_batch(batch, length)], seed=0,
                       autocast=contextlib.nullcontext)
    assert 0.9 < flops / reference < 1.15


def test_measuring_moves_nothing_of_the_real_run() -> None:
    cfg = tiny()  # ITC queue and EMA model, ITM, MLM: every stateful part
    pt = Pretrainer(cfg, VOCAB)
    before = {k: v.clone() for k, v in pt.state_dict().items()}
    rng = torch.get_rng_state()
    assert step_flops(pt, [random_batch()], seed=0, autocast=contextlib.nullcontext) > 0
    assert all(torch.equal(before[k], v) for k, v in pt.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in pt.parameters())


def test_more_passes_cost_more() -> None:
    base = tiny(**{"objectives.itm.enabled": False, "objectives.mlm.enabled": False})
    with_itm = tiny(**{"objectives.mlm.enabled": False})
    flops = [step_flops(Pretrainer(c, VOCAB), [random_batch()], seed=0,
                        autocast=contextlib.nullcontext) for c in (base, with_itm)]
    assert flops[1] > 1.2 * flops[0]  # ITM fuses positives and two sets of negatives


def test_budgets_set_the_steps(tmp_path: Path) -> None:
    by_samples = Trainer(small(tmp_path, **{"schedule.budget_samples": 40}), 0,
                         checkpoint_dir=None)
    assert by_samples.total_steps == 40 // 8
    probe = Trainer(small(tmp_path), 0, checkpoint_dir=None)
    per_step = probe.flops_per_step
    by_flops = Trainer(small(tmp_path, **{"schedule.budget_flops": 2.5 * per_step,
                                          "schedule.steps": 100}), 0, checkpoint_dir=None)
    assert by_flops.total_steps == 2
    capped = Trainer(small(tmp_path, **{"schedule.budget_flops": 1e30}), 0, checkpoint_dir=None)
    assert capped.total_steps == 3  # schedule.steps bounds a FLOPs budget
    assert steps_for_flops(10.0, 100, 5) == 1  # never less than one step
    out = by_samples.run()
    assert out.steps == 5
    assert out.cost["cost_samples"] == 5 * 8
    assert out.cost["cost_flops"] == 5 * by_samples.flops_per_step
    assert out.cost["cost_train_s"] > 0


def test_budget_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as both:
        build_config("tiny", dotted={"schedule.budget_samples": 100, "schedule.budget_flops": 1e9})
    assert both.value.field == "schedule.budget_flops"
    with pytest.raises(ConfigError) as small_budget:
        build_config("tiny", dotted={"schedule.budget_samples": 3})
    assert small_budget.value.field == "schedule.budget_samples"
