"""Fine-tuned retrieval, as ALBEF's ``Retrieval.py`` does it: the pretrained model is trained
further on the retrieval training split with ITC and ITM with hard negatives only (MLM and
every other objective off), then scored with the same R@K protocol as zero-shot retrieval (ITC
top-k re-ranked by ITM).

The fine-tune is a fresh ``Trainer`` over the trial's own data and seed with that objective
mix and the task's budget, its trunk (and the ITC temperature and ITM head, where the trial
trained them) copied from the pretrained model, its momentum copies synchronised to it. An ITM
head the trial never trained starts from its initialisation, as ALBEF's would from a
checkpoint without one.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainer.config import TrainConfig
from trainer.config.downstream import FinetuneSettings
from trainer.loop import Trainer
from trainer.metric_names import RETRIEVAL_METRICS

RETRIEVAL_FT_METRICS = ("mean_recall", "t2i_r1", "i2t_r1")
"""What the task reports (on the trial's test split)."""


@dataclass(frozen=True)
class RetrievalFinetune:
    metrics: dict[str, float]
    protocol: str
    fingerprint: str
    flops: float
    """Its training FLOPs, counted as pretraining's (``Trainer.cost``)."""


def finetune_config(cfg: TrainConfig, budget: FinetuneSettings) -> TrainConfig:
    """The trial's config with ALBEF's retrieval fine-tuning mix and the task's budget."""
    data = cfg.model_dump(mode="json")
    for name, settings in data["objectives"].items():
        settings["enabled"] = name in ("itc", "itm")
    data["objectives"]["itm"]["hard_negatives"] = True
    data["init"]["warm_start"] = False  # the weights come from the pretrained trial
    data["schedule"] |= {"steps": budget.steps, "budget_samples": None, "budget_flops": None,
                         "warmup_steps": round(budget.warmup_fraction * budget.steps)}
    data["optim"] |= {"lr": budget.lr, "weight_decay": budget.weight_decay,
                      "accumulation_steps": 1}
    data["data"]["batch_size"] = budget.batch_size
    data["eval"] |= {"split": "test", "every_steps": None}
    data["eval"]["downstream"]["tasks"] = []
    return TrainConfig.model_validate(data)


def _copy(into: nn.Module, source: nn.Module) -> None:
    into.load_state_dict(source.state_dict())


def finetune_retrieval(trainer: Trainer, budget: FinetuneSettings) -> RetrievalFinetune:
    """Fine-tune a copy of ``trainer``'s model for retrieval; ``trainer`` is not modified."""
    ft = Trainer(finetune_config(trainer.cfg, budget), trainer.seed, checkpoint_dir=None,
                 benchmark=trainer.bench)
    _copy(ft.pretrainer.model, trainer.pretrainer.model)
    for name in ("itc", "itm"):
        if name in trainer.pretrainer.objectives:
            _copy(ft.pretrainer.objectives[name], trainer.pretrainer.objectives[name])
    for online, momentum in ft.pretrainer.momentum_pairs():
        _copy(momentum, online)
    outcome = ft.run()
    metrics = {k: outcome.metrics[k] for k in RETRIEVAL_METRICS}
    return RetrievalFinetune({k: metrics[k] / 100.0 for k in RETRIEVAL_FT_METRICS},
                             outcome.protocol, outcome.fingerprints.get("data_order", ""),
                             outcome.cost["cost_flops"])
