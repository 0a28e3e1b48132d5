"""Data parallelism over ``torch.distributed``: one trial as N workers on one global batch.

When a process group of world size > 1 is initialised (gloo on CPU, nccl on CUDA; Ray Train's
``TorchTrainer`` does it, as do the tests), every worker builds the same model (same seed), runs
the same global sampler and keeps its contiguous slice ``[r*B/N, (r+1)*B/N)`` of each global
batch, so the rows all workers see together are exactly the 1-worker batch, in its order.

What crosses workers, so that N workers x B/N follow 1 worker x B:

- ITC: the projected features and image ids are gathered (with gradient: ``gather``), so each
  worker scores its rows against all B keys; the momentum keys are gathered without gradient
  and the queue enqueues all B of them (identical on every worker).
- ITM: every worker samples the hard negatives of all B rows from the gathered similarities
  with the same stream (as 1 worker does), keeps its rows' picks, and takes the negative
  candidates from the gathered embeddings (with gradient).
- MLM: every worker draws the global batch's masks from the same stream and keeps its rows.
- Losses that average over a data-dependent count (MLM's masked tokens, ITM's rows) are
  rescaled by ``local_count * N / global_count``, so that averaging over workers (the
  gradient all-reduce, and the logs) gives the global mean, as 1 worker computes it.
- Gradients are averaged with one all-reduce per optimizer step (``average_gradients``), not
  DDP: the order of collectives is then fixed, parameters unused in a step need no special
  case, and state dicts keep their names.

Anything else (other objectives' streams, dropout) draws per worker: ``rank_stream_name``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from trainer.config.errors import ConfigError


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums each worker's gradient of the gathered tensor and hands
    every worker the part of its own rows (ALBEF's ``AllGather``, SimCLR's ``GatherLayer``)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # noqa: D102
        world, rank = dist.get_world_size(), dist.get_rank()
        ctx.rank, ctx.rows = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # noqa: D102
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


@dataclass(frozen=True)
class DataParallel:
    """This worker's place in the group, and the collectives the trainer needs."""

    rank: int
    world: int
    device: str = "cpu"
    """Where the small tensors of collectives live: the current GPU under nccl (which takes
    only CUDA tensors), else the CPU."""

    @classmethod
    def current(cls) -> DataParallel | None:
        """The initialised process group when its world size is > 1, else None (1 worker)."""
        if not (dist.is_available() and dist.is_initialized()):
            return None
        world = dist.get_world_size()
        if world == 1:
            return None
        nccl = dist.get_backend() == "nccl"
        return cls(dist.get_rank(), world, f"cuda:{torch.cuda.current_device()}" if nccl else "cpu")

    def shard_size(self, global_size: int, what: str = "data.batch_size") -> int:
        if global_size % self.world:
            raise ConfigError(what, f"{global_size} does not split evenly over "
                              f"{self.world} data-parallel workers")
        return global_size // self.world

    def rows(self, local_size: int) -> slice:
        """This worker's rows of a global batch whose shards have ``local_size`` rows."""
        return slice(self.rank * local_size, (self.rank + 1) * local_size)

    def shard(self, global_rows: Tensor) -> Tensor:
        """This worker's contiguous slice of a tensor over the global batch."""
        return global_rows[self.rows(self.shard_size(global_rows.shape[0]))]

    # ---- collectives --------------------------------------------------------------------------
    def gather(self, x: Tensor) -> Tensor:
        """Every worker's ``x`` concatenated in rank order (the global batch's order), with
        gradient flowing back to each worker's own rows."""
        out: Tensor = _GatherWithGrad.apply(x)
        return out

    @torch.no_grad()
    def gather_detached(self, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.detach().contiguous())
        return torch.cat(parts)

    @torch.no_grad()
    def sum_int(self, value: int) -> int:
        t = torch.tensor([value], dtype=torch.long, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return int(t.item())

    def global_mean(self, local_mean: Tensor, local_count: int, global_count: int) -> Tensor:
        """``local_mean`` rescaled so that its average over workers is the mean over all
        ``global_count`` items (``local_count`` of them here)."""
        if global_count == 0:
            return local_mean * 0.0
        return local_mean * (local_count * self.world / global_count)

    @torch.no_grad()
    def all_finite(self, loss: Tensor) -> bool:
        """True when every worker's loss is finite (all workers agree, so all raise together)."""
        flag = torch.tensor([float(torch.isfinite(loss.detach()).all())], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() > 0)

    @torch.no_grad()
    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Average every gradient over the workers in one all-reduce; a parameter some worker
        left without gradient counts zero there (and gets one everywhere if any worker has
        one), as it would in the 1-worker backward of the whole batch."""
        params = [p for p in params if p.requires_grad]
        has = torch.tensor([float(p.grad is not None) for p in params], device=self.device)
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        live = [p for p, h in zip(params, has.tolist(), strict=True) if h > 0]
        if not live:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in live]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world
        offset = 0
        for p in live:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            offset += n

    @torch.no_grad()
    def mean_logs(self, logs: dict[str, float]) -> dict[str, float]:
        """Each scalar averaged over the workers (keys sorted: the same order everywhere)."""
        names = sorted(logs)
        t = torch.tensor([logs[k] for k in names], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return {k: float(v) / self.world for k, v in zip(names, t.tolist(), strict=True)}

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every worker's picklable ``obj``, in rank order, on every worker."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        dist.barrier()


def rank_stream_name(name: str, dp: DataParallel | None) -> str:
    """The name of stream ``name`` private to this worker: unchanged on rank 0 (and for 1
    worker), ``name@rank<r>`` elsewhere, so workers drawing local shapes draw different numbers."""
    return name if dp is None or dp.rank == 0 else f"{name}@rank{dp.rank}"

