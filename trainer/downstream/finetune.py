"""Fine-tuning one downstream task on a copy of a pretrained trunk, the way the papers do it.

The trunk (encoders and fusion, never the pretraining objectives or EMA copies) is copied, a
task head is put on it, both are trained with AdamW under linear warmup and cosine decay
(ALBEF's fine-tuning schedule), the state with the best validation score is kept, and that
state is scored once on the test split. Everything random is drawn from the trial's seed and
the task's name (``derive_seed``): the head's initial weights, the data order (one permutation
per epoch) and dropout, so two arms at one seed fine-tune from the same head init in the same
order, and the pairing fingerprints can say so.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from trainer.config.downstream import FinetuneSettings
from trainer.model.interface import VisionLanguageModel
from trainer.streams import derive_seed


class Task(Protocol):
    """A downstream task bound to its data: how to build its head, its training loss over a
    batch of training examples, and its metrics on a split (``primary`` selects on val)."""

    name: str
    primary: str

    def head(self, trunk: VisionLanguageModel) -> nn.Module: ...

    def train_size(self) -> int: ...

    def loss(self, trunk: VisionLanguageModel, head: nn.Module, idx: Tensor) -> Tensor: ...

    def evaluate(self, trunk: VisionLanguageModel, head: nn.Module, split: str
                 ) -> dict[str, float]: ...


@dataclass
class FinetuneResult:
    test: dict[str, float]
    val: dict[str, float]
    best_step: int
    history: list[tuple[int, float]] = field(default_factory=list)
    """(step, validation primary) at every evaluation."""
    fingerprint: str = ""
    """Hash of the head's initial weights and the first epoch's order: equal across arms that
    fine-tune from the same draws."""
    flops: float = 0.0
    """Training FLOPs of the fine-tune (forward and backward of every step; selection and test
    passes excluded, as pretraining's ``cost_flops`` excludes evaluation)."""


def lr_at(step: int, budget: FinetuneSettings) -> float:
    """Linear warmup over ``warmup_fraction`` of the steps, then cosine decay to zero."""
    warm = max(1, round(budget.warmup_fraction * budget.steps))
    if step < warm:
        return budget.lr * (step + 1) / warm
    progress = (step - warm) / max(1, budget.steps - warm)
    return budget.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def epoch_order(seed: int, task: str, epoch: int, n: int) -> Tensor:
    """The training examples' order in ``epoch``: a permutation seeded by (seed, task, epoch)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, f"finetune:{task}:epoch:{epoch}"))
    return torch.randperm(n, generator=gen)


def batches(seed: int, task: str, n: int, batch_size: int, steps: int) -> list[Tensor]:
    """``steps`` batches of example indices, epoch after epoch; a last short batch of an epoch
    is kept (small task splits lose no examples)."""
    out: list[Tensor] = []
    epoch = 0
    while len(out) < steps:
        order = epoch_order(seed, task, epoch, n)
        out.extend(order[i:i + batch_size] for i in range(0, n, batch_size))
        epoch += 1
    return out[:steps]


def _fingerprint(head: nn.Module, first: list[Tensor]) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(head.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to(torch.float64).cpu().numpy().tobytes())
    for idx in first:
        h.update(idx.numpy().tobytes())
    return h.hexdigest()[:16]


def finetune(
    trunk: VisionLanguageModel,
    task: Task,
    budget: FinetuneSettings,
    seed: int,
    *,
    device: torch.device | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> FinetuneResult:
    """Fine-tune a copy of ``trunk`` on ``task``; the caller's trunk is left untouched."""
    device = device or torch.device("cpu")
    model = copy.deepcopy(trunk)
    assert isinstance(model, nn.Module)
    with torch.random.fork_rng(devices=[]):  # the head's init and dropout from the trial seed
        torch.manual_seed(derive_seed(seed, f"finetune:{task.name}:init"))
        head = task.head(model)
        plan = batches(seed, task.name, task.train_size(), budget.batch_size, budget.steps)
        fingerprint = _fingerprint(head, plan[: math.ceil(task.train_size()
                                                          / budget.batch_size)])
        model.to(device)
        head.to(device)
        params = [p for p in [*model.parameters(), *head.parameters()] if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": budget.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=budget.lr)
        best: tuple[float, int, dict[str, Tensor], dict[str, Tensor]] | None = None
        history: list[tuple[int, float]] = []
        best_val: dict[str, float] = {}

        def checkpoint(step: int) -> None:
            nonlocal best, best_val
            val = _evaluate(task, model, head, "val")
            score = val[task.primary]
            history.append((step, score))
            if on_eval is not None:
                on_eval(step, val)
            if best is None or score > best[0]:  # ties keep the earlier state
                best = (score, step, _copy_state(model), _copy_state(head))
                best_val = val

        flops_per_sample = 0.0
        for step, idx in enumerate(plan):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, budget)
            model.train()
            head.train()
            opt.zero_grad(set_to_none=True)
            # the first step is counted (counting moves no number); the rest scale by samples
            counter = FlopCounterMode(display=False) if step == 0 else None
            with counter or contextlib.nullcontext():
                loss = task.loss(model, head, idx)
                loss.backward()
            if counter is not None:
                flops_per_sample = counter.get_total_flops() / len(idx)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            done = step + 1
            if done % budget.eval_every == 0 or done == budget.steps:
                checkpoint(done)
        assert best is not None
        model.load_state_dict(best[2])
        head.load_state_dict(best[3])
        test = _evaluate(task, model, head, "test")
    flops = flops_per_sample * sum(len(idx) for idx in plan)
    return FinetuneResult(test, best_val, best[1], history, fingerprint, flops)


def _copy_state(module: object) -> dict[str, Tensor]:
    assert isinstance(module, nn.Module)
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _evaluate(task: Task, model: VisionLanguageModel, head: nn.Module, split: str
              ) -> dict[str, float]:
    assert isinstance(model, nn.Module)
    model.eval()
    head.eval()
    with torch.no_grad():
        return task.evaluate(model, head, split)
