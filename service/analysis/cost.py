"""What each arm cost to train, beside what it gained.

Arms of an ablation rarely cost the same: ITM with hard negatives adds a fusion pass, VILLA
several adversarial ones, MLM a masked text pass. An effect reported without its price invites
the wrong trade; this step averages the trials' own cost records (``trainer.cost``: samples
seen, training FLOPs, training wall time) per arm and relates them to the baseline.
"""

from __future__ import annotations

import math

import numpy as np

from service.analysis.schema import ArmCost, ExperimentView

COST_FIELDS = {"samples": "cost_samples", "flops": "cost_flops", "train_s": "cost_train_s",
               "finetune_samples": "cost_finetune_samples", "finetune_flops": "cost_finetune_flops",
               "finetune_s": "cost_finetune_s"}
"""ArmCost field -> the trial metric it averages (fine-tune samples, FLOPs and seconds, summed
over the tasks evaluated: ``service.views``)."""


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def arm_costs(view: ExperimentView, baseline: str) -> list[ArmCost]:
    """One row per variant (spec order); empty when no done trial recorded a cost."""
    rows = []
    for v in view.variants:
        done = [t for t in view.trials if t.variant == v.name and t.done]
        means = {key: _mean([t.metrics[m] for t in done if m in t.metrics])
                 for key, m in COST_FIELDS.items()}
        rows.append(ArmCost(variant=v.name, n=len(done), **means))
    if all(r.flops is None and r.train_s is None and r.samples is None
           and r.finetune_samples is None for r in rows):
        return []
    base = next(r for r in rows if r.variant == baseline)
    for r in rows:
        r.flops_ratio = _ratio(r.flops, base.flops)
        r.train_s_ratio = _ratio(r.train_s, base.train_s)
        r.finetune_flops_ratio = _ratio(r.finetune_flops, r.flops)
        r.finetune_s_ratio = _ratio(r.finetune_s, r.train_s)
    return rows
