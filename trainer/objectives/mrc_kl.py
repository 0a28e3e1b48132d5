"""MRC-kl: masked patch classification with KL-divergence (UNITER eq. 6) on ViT patches.

Predict a class distribution for each masked patch from the fusion path and minimise
``KL(c(v_i) || g(v_i^m))`` over masked patches, where the target ``c`` is

- on `shapes`: the patch's label from the per-pixel label maps (``batch.patch_labels``,
  majority label, or the main foreground label when it covers ``min_foreground`` of the patch),
  one-hot: the KL is then the cross-entropy. One softmax per label channel (shape, colour);
  the loss averages the channels used.
- on real data: a teacher's softmax (UNITER uses the detector's class distribution): a local
  TorchScript file mapping normalised images [B,3,H,W] to per-patch logits [B,P,K].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from trainer.objectives.base import Objective, ObjectiveEnv, ObjectiveOutput, register
from trainer.objectives.mpm import MPMConfig, masked_patch_states
from trainer.objectives.mrfr import PatchHead

if TYPE_CHECKING:
    from trainer.model.forward import StepContext



def shapes_channels() -> dict[str, tuple[int, int]]:
    """Label-map channel and class count (0 = background) of each `shapes` label."""
    from trainer.data import COLOURS, SHAPES  # trainer.data imports trainer.config

    return {"shape": (0, len(SHAPES) + 1), "colour": (1, len(COLOURS) + 1)}


class MRCKLConfig(MPMConfig):
    labels: Literal["shape", "colour", "both"] = Field(
        default="both", description="`shapes` label channels to predict"
    )
    min_foreground: float | None = Field(
        default=0.25, gt=0.0, le=1.0,
        description="a foreground label covering this share of a patch labels it (None: majority)",
    )
    teacher: str | None = Field(
        default=None, description="TorchScript teacher: images -> per-patch logits [B,P,K]"
    )
    teacher_classes: int | None = Field(default=None, ge=2, description="K of the teacher")


def mrc_kl_loss(logits: Tensor, target: Tensor) -> Tensor:
    """``mean_i sum_k t_ik (log t_ik - log softmax(logits)_ik)`` over rows i (0 log 0 = 0)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    t = target.float()
    return (torch.xlogy(t, t) - t * logp).sum(-1).mean()


@register("mrc_kl", MRCKLConfig)
class MRCKL(Objective):
    needs_patch_labels = True

    def __init__(self, cfg: MRCKLConfig, env: ObjectiveEnv) -> None:
        super().__init__(cfg, env)
        self.teacher: torch.jit.ScriptModule | None = None
        if cfg.teacher is not None:
            if cfg.teacher_classes is None:
                raise _config_error("teacher_classes", "a teacher needs its number of classes")
            self.teacher = torch.jit.load(cfg.teacher, map_location="cpu").eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
            self.channels = {"teacher": cfg.teacher_classes}
        elif env.train.data.dataset != "shapes":
            raise _config_error(
                "teacher", "real data has no patch labels; give a teacher (a local TorchScript "
                "file: images -> per-patch logits) or disable objectives.mrc_kl",
            )
        else:
            names = ["shape", "colour"] if cfg.labels == "both" else [cfg.labels]
            self.channels = {n: shapes_channels()[n][1] for n in names}
        self.patch_label_min_foreground = cfg.min_foreground
        self.heads = nn.ModuleDict({
            n: PatchHead(env.vision_dim, k) for n, k in self.channels.items()
        })
        self.mask_token = nn.Parameter(torch.zeros(env.vision_dim))

    def targets(self, ctx: StepContext, name: str) -> Tensor:
        """[B,P,K] target distributions for one head."""
        if self.teacher is not None:
            with torch.no_grad():
                self.teacher.to(ctx.batch.images.device)
                return F.softmax(self.teacher(ctx.batch.images).float(), dim=-1)
        labels = ctx.batch.patch_labels
        if labels is None:
            raise RuntimeError("mrc_kl: the batch carries no patch_labels (needs `shapes` data)")
        channel = shapes_channels()[name][0]
        return F.one_hot(labels[:, channel], self.channels[name]).float()

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        mask, states = masked_patch_states(
            ctx, self.cfg, self.env.vocab, self.env.train.model.vision.patch_size, self.mask_token
        )
        losses, logs = [], {}
        for name, head in self.heads.items():
            logits = head(states)[mask]
            target = self.targets(ctx, name)[mask]
            losses.append(mrc_kl_loss(logits, target))
            acc = (logits.argmax(-1) == target.argmax(-1)).float().mean()
            logs[f"mrc_acc_{name}"] = float(acc)
        return ObjectiveOutput(torch.stack(losses).mean(), logs)


def _config_error(field: str, reason: str) -> ValueError:
    from trainer.config import ConfigError  # trainer.config imports this package

    return ConfigError(f"objectives.mrc_kl.{field}", reason)
