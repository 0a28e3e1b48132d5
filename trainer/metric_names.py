"""The names of the final metrics a trial reports, importable without torch: the controller
checks a spec's ``metrics.primary`` and ``metrics.reported`` against them at POST, so an
experiment never runs for hours to compare a metric no trial produces."""

from __future__ import annotations

RECALL_KS = (1, 5, 10)
"""The K of every R@K retrieval reports."""

RETRIEVAL_METRICS: tuple[str, ...] = (
    "mean_recall",
    *(f"{direction}_r{k}" for direction in ("t2i", "i2t") for k in RECALL_KS),
)
"""Retrieval on the evaluation split: R@K both ways and their mean."""


COST_METRICS: tuple[str, ...] = ("cost_samples", "cost_flops", "cost_flops_per_step",
                                 "cost_train_s")
"""What a trial took to train (``trainer.cost``): a comparison shows them per arm."""


def finetune_seconds_metric(task: str) -> str:
    """The wall time of one downstream evaluation of a trial (fine-tune, selection, test)."""
    return f"cost_finetune_s_{task}"


def finetune_flops_metric(task: str) -> str:
    """The training FLOPs of one downstream fine-tune of a trial (zero for a zero-shot task)."""
    return f"cost_finetune_flops_{task}"


DOWNSTREAM_METRICS: dict[str, tuple[str, ...]] = {
    "vqa": ("vqa_accuracy",),
    "nlvr": ("nlvr_accuracy", "nlvr_consistency"),
    "ve": ("ve_accuracy",),
    "grounding": ("grounding_accuracy",),
    "retrieval_ft": ("retrieval_ft_mean_recall", "retrieval_ft_t2i_r1", "retrieval_ft_i2t_r1"),
    "minimal_pairs": ("minimal_pairs_text", "minimal_pairs_image", "minimal_pairs_group"),
}
"""What each downstream task (``eval.downstream.tasks``) reports, on its test split; all are
fractions in [0, 1] (fine-tuned retrieval's R@K too, unlike zero-shot retrieval's percent), so
a sum over tasks (UNITER's Meta-Sum) weighs every task alike."""

DOWNSTREAM_PRIMARY: dict[str, str] = {
    "vqa": "vqa_accuracy", "nlvr": "nlvr_accuracy", "ve": "ve_accuracy",
    "grounding": "grounding_accuracy", "retrieval_ft": "retrieval_ft_mean_recall",
    "minimal_pairs": "minimal_pairs_group",
}
"""The metric each task is judged by: what the papers' tables lead with (Winoground's group
score for the minimal pairs, the strictest of the three; mean recall for fine-tuned retrieval,
as the zero-shot comparison)."""


def is_trial_metric(name: str) -> bool:
    """A final metric of a trial: a retrieval metric, the last value of a loss term
    (``final_loss``, ``final_loss_<objective>``), a cost, or a downstream task's metric."""
    return (name in RETRIEVAL_METRICS or name in COST_METRICS or name == "final_loss"
            or any(name in (finetune_seconds_metric(t), finetune_flops_metric(t))
                   for t in DOWNSTREAM_METRICS)
            or name.startswith("final_loss_")
            or any(name in names for names in DOWNSTREAM_METRICS.values()))
