"""MRC-kl: masked patch classification with KL-divergence (UNITER eq. 6) on ViT patches.

Predict a class distribution for each masked patch from the fusion path and minimise
``KL(c(v_i) || g(v_i^m))`` over masked patches, where the target ``c`` is

- on `shapes` with ``target: distribution`` (default): the patch's class distribution, the
  share of its pixels carrying each label in the per-pixel label maps
  (``batch.patch_histograms``). This is the counterpart of the detector's soft class
  distribution that UNITER distils: a patch straddling a circle and the background gets
  a mixed target, not a forced single class.
- on `shapes` with ``target: label``: the one-hot of the patch's label (majority label, or the
  main foreground label when it covers ``min_foreground`` of the patch). The KL is then the
  cross-entropy, i.e. UNITER's MRC (classification against the detector's top class).
- on real data: a teacher's softmax (UNITER uses the detector's class distribution): a local
  TorchScript file mapping normalised images [B,3,H,W] to per-patch logits [B,P,K].

One softmax per `shapes` label channel (shape, colour); the loss averages the channels used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.config import ConfigError
from trainer.config.objectives import MRCKLConfig
from trainer.data import COLOURS, SHAPES, labels_from_histograms
from trainer.objectives.base import Objective, ObjectiveEnv, ObjectiveOutput, register
from trainer.objectives.mpm import masked_patch_states
from trainer.objectives.mrfr import PatchHead

if TYPE_CHECKING:
    from trainer.model.forward import StepContext


def shapes_channels() -> dict[str, tuple[int, int]]:
    """Label-map channel and class count (0 = background) of each `shapes` label."""
    return {"shape": (0, len(SHAPES) + 1), "colour": (1, len(COLOURS) + 1)}


def mrc_kl_loss(logits: Tensor, target: Tensor) -> Tensor:
    """``mean_i sum_k t_ik (log t_ik - log softmax(logits)_ik)`` over rows i (0 log 0 = 0)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    t = target.float()
    return (torch.xlogy(t, t) - t * logp).sum(-1).mean()


@register("mrc_kl")
class MRCKL(Objective):
    cfg: MRCKLConfig
    needs_patch_histograms = True

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
        hist = ctx.batch.patch_histograms
        if hist is None:
            raise RuntimeError("mrc_kl: the batch carries no patch_histograms (needs `shapes` "
                               "data)")
        channel, k = shapes_channels()[name][0], self.channels[name]
        shares = hist[:, channel]
        # the channels share one K (the largest label of any channel, plus one): cut or pad
        if shares.shape[-1] > k:
            if bool(shares[..., k:].any()):
                raise RuntimeError(f"mrc_kl: {name} labels go beyond the head's {k} classes")
            shares = shares[..., :k]
        shares = F.pad(shares, (0, k - shares.shape[-1]))  # labels absent from the split
        if self.cfg.target == "distribution":
            return shares.float()
        return F.one_hot(labels_from_histograms(shares, self.cfg.min_foreground), k).float()

    def forward(self, ctx: StepContext) -> ObjectiveOutput:
        mask, states = masked_patch_states(
            ctx, self.cfg, self.env.vocab, self.env.train.model.vision.patch_size, self.mask_token,
            "mrc_kl",
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
    return ConfigError(f"objectives.mrc_kl.{field}", reason)
