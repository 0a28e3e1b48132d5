"""The trainable whole: model, its EMA copy (only when some objective needs it) and objectives."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trainer.config import TrainConfig
from trainer.distributed import DataParallel
from trainer.model.build import build_model
from trainer.model.forward import Batch, StepContext, VocabInfo
from trainer.model.momentum import frozen_copy, momentum_update
from trainer.objectives import OBJECTIVES, Objective, ObjectiveEnv
from trainer.objectives.base import as_objective, require
from trainer.objectives.itm import ITM
from trainer.streams import RandomStreams
from trainer.warm_start import WarmStart, load_into


@dataclass
class StepOutput:
    loss: Tensor
    """Weighted sum of the enabled objectives' losses."""
    terms: dict[str, Tensor]
    """Each objective's unweighted loss (detached), keyed ``loss_<name>``."""
    logs: dict[str, float]


class Pretrainer(nn.Module):
    """Builds only what the enabled objectives use: a disabled objective has no parameters and
    runs nothing, and the momentum model exists only if an enabled objective reads it."""

    def __init__(self, cfg: TrainConfig, vocab: VocabInfo) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab = vocab
        self.model = build_model(
            cfg.model,
            vocab_size=vocab.size,
            image_size=cfg.data.image_size,
            max_len=cfg.data.max_text_len,
        )
        env = ObjectiveEnv(cfg, vocab, self.model.text_dim, self.model.vision_dim)
        self.objectives = nn.ModuleDict(
            {name: OBJECTIVES[name](cfg.objective(name), env) for name in cfg.enabled_objectives()}
        )
        needs_momentum = any(o.needs_momentum_model for o in self.enabled().values())
        self.model_m = frozen_copy(self.model) if needs_momentum else None
        self.streams: RandomStreams | None = None
        """Set by the trainer: the trial's named random streams (``trainer.streams``)."""
        self.data_parallel: DataParallel | None = None
        """Set by the trainer when it runs as one of several data-parallel workers."""

    def start_from(self, warm: WarmStart) -> None:
        """Load the shared warm start into the encoders (and their EMA copy, which must start
        equal to them); heads, fusion and projections keep this trial's own init."""
        load_into(self.model, warm)
        if self.model_m is not None:
            self.model_m.load_state_dict(self.model.state_dict())

    def enabled(self) -> dict[str, Objective]:
        """The enabled objectives by name: ``self.objectives`` (which registers them as
        submodules, and types them as ``nn.Module``) typed as objectives."""
        return {name: as_objective(module) for name, module in self.objectives.items()}

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        pairs: list[tuple[nn.Module, nn.Module]] = (
            [] if self.model_m is None else [(self.model, self.model_m)]
        )
        for objective in self.enabled().values():
            pairs.extend(objective.momentum_pairs())
        return pairs

    def forward(self, batch: Batch, *, alpha_ramp: float, step: int) -> StepOutput:
        if self.training:
            momentum_update(self.momentum_pairs(), self.cfg.model.momentum)
        ctx = StepContext(self.model, self.model_m, batch, alpha_ramp=alpha_ramp, step=step,
                          streams=self.streams, data_parallel=self.data_parallel)
        objectives = self.enabled()
        ctx.objectives = dict(objectives)
        total: Tensor | None = None
        terms: dict[str, Tensor] = {}
        logs: dict[str, float] = {}
        for name, objective in objectives.items():
            out = objective(ctx)
            weighted = objective.cfg.weight * out.loss
            total = weighted if total is None else total + weighted
            terms[f"loss_{name}"] = out.loss.detach()
            logs.update(out.logs)
        assert total is not None  # the config guarantees one enabled objective
        return StepOutput(total, terms, logs)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: no decay on biases, LayerNorms, embeddings' norms and temperature."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    @torch.no_grad()
    def itm_scores(self, text: Tensor, mask: Tensor, image: Tensor) -> Tensor:
        """ITM logit margin (match log-odds) for aligned rows of text and image embeddings."""
        itm = require(self.enabled(), ITM)
        return itm.score(itm.readout(self.model.fuse(text, mask, image), mask))
