"""A trial's downstream evaluations: one per task in ``eval.downstream.tasks``, each keyed by
(trial key, task, that task's settings), so an evaluation is computed once and a task added
later runs alone against the trial's kept trunk (its final checkpoint).

The fine-tuned tasks (``vqa``, ``nlvr``, ``ve``, ``grounding``) each copy the trunk, put
their head on it and fine-tune (``finetune``); ``retrieval_ft`` fine-tunes the whole model
with ITC + ITM as ALBEF's retrieval fine-tune (``retrieval_ft``); ``minimal_pairs`` is
zero-shot. A task's metrics reach the trial as ``<task>_<metric>`` (``vqa_accuracy``,
``nlvr_consistency``, ``minimal_pairs_group``, ...): final metrics like retrieval's, so they
can be a spec's primary metric and ``/compare`` reads them like any other.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from trainer.config import TrainConfig
from trainer.data.cache import default_dir
from trainer.downstream.adapters import BUILDERS, GroundingTask, Reader
from trainer.downstream.finetune import finetune
from trainer.downstream.keys import EVALUATION_VERSION, evaluation_key, task_settings
from trainer.downstream.minimal_pairs import score_minimal_pairs
from trainer.loop import Trainer
from trainer.metric_names import finetune_flops_metric, finetune_seconds_metric

__all__ = ["EVALUATION_VERSION", "Evaluation", "evaluate_task", "evaluation_key",
           "pretrained_trainer", "task_settings"]


@dataclass
class Evaluation:
    """One task's result on one trial (what the trial's MLflow run keeps as an artifact)."""

    task: str
    key: str
    metrics: dict[str, float]
    """Test-split metrics under their short names (``accuracy``, ``consistency``, ...)."""
    protocol: str
    val: dict[str, float] = field(default_factory=dict)
    best_step: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)
    fingerprint: str = ""
    details: dict[str, float] = field(default_factory=dict)
    """Diagnostics that are not compared (the share of texts truncated, the group count)."""
    seconds: float = 0.0
    """Wall time of the evaluation (fine-tune, selection and test), on the trial's worker."""
    flops: float | None = None
    """Training FLOPs of its fine-tune (0 for the zero-shot probe); None in an evaluation kept
    from before they were counted."""

    def trial_metrics(self) -> dict[str, float]:
        return {f"{self.task}_{k}": v for k, v in self.metrics.items()}

    def cost_metrics(self) -> dict[str, float]:
        """What it cost, as the trial reports it (``cost_finetune_s_<task>``,
        ``cost_finetune_flops_<task>``)."""
        flops = {} if self.flops is None else {finetune_flops_metric(self.task): self.flops}
        return {finetune_seconds_metric(self.task): self.seconds, **flops}

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        data = dict(data)
        data["history"] = [tuple(p) for p in data.get("history", [])]
        return cls(**data)


DIAGNOSTICS = ("truncated", "groups")


def _split_metrics(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    compared = {k: v for k, v in metrics.items() if k not in DIAGNOSTICS}
    return compared, {k: v for k, v in metrics.items() if k in DIAGNOSTICS}


def evaluate_task(trainer: Trainer, task: str, *, trial_key: str) -> Evaluation:
    """Run one task on the trainer's (pretrained) trunk, timed; the trunk is not modified."""
    start = time.perf_counter()
    evaluation = _evaluate(trainer, task, trial_key)
    return replace(evaluation, seconds=time.perf_counter() - start)


def _evaluate(trainer: Trainer, task: str, trial_key: str) -> Evaluation:
    cfg, seed = trainer.cfg, trainer.seed
    key = evaluation_key(trial_key, task, cfg)
    if task == "minimal_pairs":
        ids, mask = trainer.bench.tokenize(trainer.bench.test.captions)
        result = score_minimal_pairs(trainer.pretrainer, trainer.bench.test, ids, mask,
                                     device=trainer.device)
        compared, details = _split_metrics(result.metrics)
        return Evaluation(task, key, compared, result.protocol, details=details, flops=0.0)
    if task == "retrieval_ft":
        from trainer.downstream.retrieval_ft import finetune_retrieval

        tuned = finetune_retrieval(trainer, cfg.eval.downstream.retrieval_ft.finetune)
        return Evaluation(task, key, tuned.metrics, f"finetune:{tuned.protocol}",
                          fingerprint=tuned.fingerprint, flops=tuned.flops)
    from trainer.downstream.tasks import load_task

    settings = cfg.eval.downstream.task(task)
    root = settings.data.root or cfg.data.root or str(default_dir())
    data = settings.data.model_copy(update={"image_size": cfg.data.image_size, "root": root})
    splits = load_task(task, data)
    reader = Reader(trainer.bench.tokenize, cfg.model.text.fusion_readout,
                    cfg.model.vision.patch_size, trainer.device,
                    eval_batch=cfg.eval.batch_size)
    bound = (GroundingTask(splits, reader, cfg.eval.downstream.grounding.proposals)
             if task == "grounding" else BUILDERS[task](splits, reader))
    out = finetune(trainer.pretrainer.model, bound, settings.finetune, seed,
                   device=trainer.device)
    compared, details = _split_metrics(out.test)
    return Evaluation(task, key, compared, f"finetune:{task}", _split_metrics(out.val)[0],
                      out.best_step, out.history, out.fingerprint, details, flops=out.flops)


def pretrained_trainer(cfg: TrainConfig, seed: int, checkpoint_dir: str) -> Trainer:
    """The finished trial's trunk, from its kept final checkpoint."""
    trainer = Trainer(cfg, seed, checkpoint_dir=checkpoint_dir)
    if not trainer.try_resume() or trainer.step < trainer.total_steps:
        raise FileNotFoundError(
            f"eval.downstream: the trial's final checkpoint is not in {checkpoint_dir}; "
            "a downstream evaluation needs the pretrained trunk")
    trainer.pretrainer.eval()
    return trainer
