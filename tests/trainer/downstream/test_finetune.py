"""Fine-tuning a downstream task: the schedule and data order from their definitions, the
trunk left untouched, the same draws across arms at one seed, and a trial's evaluations
computed once, stored on its MLflow run and added later from the kept trunk."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from trainer.config import TrainConfig, build_config
from trainer.config.downstream import FinetuneSettings
from trainer.downstream.finetune import batches, finetune, lr_at
from trainer.downstream.retrieval_ft import finetune_config
from trainer.downstream.run import evaluate_task, evaluation_key
from trainer.loop import Trainer
from trainer.metric_names import DOWNSTREAM_METRICS
from trainer.trial import run_trial

TASK_DATA = {"num_train": 48, "num_val": 16, "num_test": 16}


def small(tmp: Path, **dotted: object) -> TrainConfig:
    base: dict[str, object] = {
        "data.root": str(tmp / "data"), "init.warm_start": False,
        "data.num_train_images": 32, "data.num_val_images": 8, "data.num_test_images": 16,
        "data.captions_per_image": 2, "data.batch_size": 8, "schedule.steps": 3,
        "schedule.warmup_steps": 0, "runtime.log_every": 1, "runtime.checkpoint_every": 3,
        "eval.rerank_k": 2, "runtime.threads": 1, "objectives.itc.queue_size": 16,
    }
    for task in ("vqa", "nlvr", "ve", "grounding"):
        base |= {f"eval.downstream.{task}.data.{k}": v for k, v in TASK_DATA.items()}
        base |= {f"eval.downstream.{task}.finetune.steps": 4,
                 f"eval.downstream.{task}.finetune.batch_size": 8,
                 f"eval.downstream.{task}.finetune.eval_every": 2}
    base |= {"eval.downstream.retrieval_ft.finetune.steps": 3,
             "eval.downstream.retrieval_ft.finetune.batch_size": 8}
    return build_config("tiny", dotted={**base, **dotted})


def test_learning_rate_warms_up_linearly_then_decays_along_a_cosine() -> None:
    b = FinetuneSettings(steps=100, batch_size=1, lr=1.0, warmup_fraction=0.1)
    assert [lr_at(s, b) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    # after warmup: 0.5 (1 + cos(pi t)), t the share of the remaining 90 steps done
    for step in (10, 40, 55, 99):
        t = (step - 10) / 90
        assert lr_at(step, b) == pytest.approx(0.5 * (1 + math.cos(math.pi * t)))
    assert lr_at(100, b) == pytest.approx(0.0)


class LinearProbe:
    """A task whose only FLOPs are one bias-free linear map of fixed inputs: forward
    2·b·d_in·d_out, backward the same again for the weight's gradient (the inputs need none)."""

    name, primary = "probe", "score"
    inputs = torch.arange(60, dtype=torch.float32).view(10, 6) / 60

    def head(self, trunk: object) -> torch.nn.Module:
        return torch.nn.Linear(6, 3, bias=False)

    def train_size(self) -> int:
        return 10

    def loss(self, trunk: object, head: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
        return head(self.inputs[idx]).square().mean()

    def evaluate(self, trunk: object, head: torch.nn.Module, split: str) -> dict[str, float]:
        return {"score": 0.0}


def test_a_fine_tunes_flops_are_its_steps_matmuls_forward_and_backward() -> None:
    budget = FinetuneSettings(steps=5, batch_size=4, eval_every=5)
    out = finetune(torch.nn.Linear(1, 1), LinearProbe(), budget, seed=0)  # type: ignore[arg-type]
    # 10 examples in batches of 4: epochs of 4 + 4 + 2, so 5 steps see 4+4+2+4+4 = 18 samples
    assert out.flops == 18 * (2 * 6 * 3 + 2 * 6 * 3)


class _NoCounter:
    """Stands in for FlopCounterMode where a run must not count at all."""

    def __init__(self, display: bool = False) -> None:
        pass

    def __enter__(self) -> _NoCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get_total_flops(self) -> int:
        return 0


def test_counting_a_fine_tunes_flops_moves_no_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    trainer = Trainer(small(tmp_path), 5, checkpoint_dir=None)
    counted = evaluate_task(trainer, "nlvr", trial_key="k")
    monkeypatch.setattr("trainer.downstream.finetune.FlopCounterMode", _NoCounter)
    uncounted = evaluate_task(trainer, "nlvr", trial_key="k")
    assert counted.metrics == uncounted.metrics and counted.history == uncounted.history
    assert counted.flops is not None and counted.flops > 0 and uncounted.flops == 0


def test_every_epoch_visits_each_example_once_and_epochs_differ() -> None:
    plan = batches(seed=3, task="vqa", n=10, batch_size=4, steps=9)
    sizes = [len(b) for b in plan]
    assert sizes == [4, 4, 2, 4, 4, 2, 4, 4, 2]  # a short last batch per epoch, nothing lost
    epochs = [torch.cat(plan[i:i + 3]).tolist() for i in (0, 3, 6)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1]
    assert batches(3, "vqa", 10, 4, 9)[0].tolist() == plan[0].tolist()  # from the seed alone
    assert batches(4, "vqa", 10, 4, 9)[0].tolist() != plan[0].tolist()
    assert batches(3, "ve", 10, 4, 9)[0].tolist() != plan[0].tolist()


def test_fine_tuning_leaves_the_trunk_alone_and_draws_the_same_for_every_arm(
    tmp_path: Path,
) -> None:
    cfg = small(tmp_path)
    trainer = Trainer(cfg, 7, checkpoint_dir=None)
    before = {k: v.clone() for k, v in trainer.pretrainer.state_dict().items()}
    first = evaluate_task(trainer, "ve", trial_key="k")
    after = trainer.pretrainer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    again = evaluate_task(trainer, "ve", trial_key="k")
    assert again.metrics == first.metrics and again.history == first.history  # deterministic
    assert 0.0 <= first.metrics["accuracy"] <= 1.0 and first.protocol == "finetune:ve"

    # another arm (hard negatives off) at the same seed: other trunk, same head init and order
    other = Trainer(small(tmp_path, **{"objectives.itm.hard_negatives": False}), 7,
                    checkpoint_dir=None)
    assert evaluate_task(other, "ve", trial_key="k2").fingerprint == first.fingerprint
    reseeded = Trainer(cfg, 8, checkpoint_dir=None)
    assert evaluate_task(reseeded, "ve", trial_key="k3").fingerprint != first.fingerprint


def test_every_task_reports_the_metrics_the_controller_expects(tmp_path: Path) -> None:
    trainer = Trainer(small(tmp_path), 0, checkpoint_dir=None)
    for task, names in DOWNSTREAM_METRICS.items():
        ev = evaluate_task(trainer, task, trial_key="k")
        assert sorted(ev.trial_metrics()) == sorted(names), task
        assert all(0.0 <= v <= 1.0 for v in ev.metrics.values()), (task, ev.metrics)


def test_the_task_list_is_not_part_of_the_trial_key_but_of_the_evaluation_key(
    tmp_path: Path,
) -> None:
    a = small(tmp_path)
    b = small(tmp_path, **{"eval.downstream.tasks": ["ve"]})
    c = small(tmp_path, **{"eval.downstream.ve.finetune.steps": 5})
    assert a.config_hash() == b.config_hash() == c.config_hash()
    assert evaluation_key("t", "ve", a) == evaluation_key("t", "ve", b)
    assert evaluation_key("t", "ve", a) != evaluation_key("t", "ve", c)
    assert evaluation_key("t", "ve", a) != evaluation_key("u", "ve", a)
    assert evaluation_key("t", "ve", a) != evaluation_key("t", "nlvr", a)


def test_a_trials_evaluations_run_once_and_a_task_added_later_runs_alone(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ckpt = tmp_path / "ckpt"
    cfg = small(tmp_path, **{"eval.downstream.tasks": ["ve", "minimal_pairs"]})
    first = run_trial(cfg, 0, tracking_uri=uri, experiment_name="ds", checkpoint_dir=ckpt)
    assert {"ve_accuracy", "minimal_pairs_group", "mean_recall"} <= set(first.metrics)
    assert set(first.evaluations) == {"ve", "minimal_pairs"}
    assert "finetune.ve" in first.fingerprints  # the pairing check covers the fine-tune
    client = MlflowClient(uri)
    run_id = first.mlflow_run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    assert client.get_run(run_id).data.metrics["ve_accuracy"] == first.metrics["ve_accuracy"]
    # what each evaluation took, as a cost beside pretraining's, on the run too
    assert first.metrics["cost_finetune_s_ve"] > 0.0
    assert (client.get_run(run_id).data.metrics["cost_finetune_s_ve"]
            == first.metrics["cost_finetune_s_ve"])
    # and its training FLOPs: per sample below pretraining's (one fused pass against ITC, ITM
    # and MLM's several), none for the zero-shot probe
    logged = client.get_run(run_id).data.metrics
    ve_flops = logged["cost_finetune_flops_ve"]
    assert ve_flops == first.metrics["cost_finetune_flops_ve"]
    assert 0 < ve_flops / (4 * 8) < logged["cost_flops"] / (3 * 8)
    assert first.metrics["cost_finetune_flops_minimal_pairs"] == 0.0

    again = run_trial(cfg, 0, tracking_uri=uri, experiment_name="ds", checkpoint_dir=ckpt)
    assert again.metrics == first.metrics and again.mlflow_run_id == run_id
    assert again.fingerprints == first.fingerprints
    assert len(client.get_metric_history(run_id, "ve_accuracy")) == 1  # read back, not rerun

    more = small(tmp_path, **{"eval.downstream.tasks": ["ve", "nlvr"]})
    added = run_trial(more, 0, tracking_uri=uri, experiment_name="ds", checkpoint_dir=ckpt)
    assert added.mlflow_run_id == run_id  # the same trial: the task list is not in its key
    assert added.metrics["ve_accuracy"] == first.metrics["ve_accuracy"]
    assert "nlvr_accuracy" in added.metrics and "nlvr_consistency" in added.metrics
    assert len(client.get_metric_history(run_id, "ve_accuracy")) == 1
    assert len(client.get_metric_history(run_id, "nlvr_accuracy")) == 1
    artifacts = {a.path for a in client.list_artifacts(run_id, "downstream")}
    assert len(artifacts) == 3  # ve, minimal_pairs, nlvr
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_task_added_after_the_trunk_is_gone_is_a_clear_error(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = small(tmp_path)
    run_trial(cfg, 0, tracking_uri=uri, experiment_name="ds", checkpoint_dir=tmp_path / "a")
    more = small(tmp_path, **{"eval.downstream.tasks": ["ve"]})
    with pytest.raises(FileNotFoundError, match="eval.downstream"):
        run_trial(more, 0, tracking_uri=uri, experiment_name="ds",
                  checkpoint_dir=tmp_path / "elsewhere")


def test_retrieval_fine_tunes_itc_and_itm_only_and_leaves_the_trial_alone(
    tmp_path: Path,
) -> None:
    cfg = small(tmp_path, **{"objectives.itm.hard_negatives": False,
                             "objectives.mlm.enabled": True})
    ft = finetune_config(cfg, cfg.eval.downstream.retrieval_ft.finetune)
    assert ft.enabled_objectives() == ["itc", "itm"]  # ALBEF's Retrieval.py mix
    assert ft.objectives.itm.hard_negatives and not ft.init.warm_start
    assert ft.schedule.steps == 3 and ft.data.batch_size == 8
    assert ft.data == cfg.data.model_copy(update={"batch_size": 8})  # the trial's own data
    trainer = Trainer(cfg, 2, checkpoint_dir=None)
    before = {k: v.clone() for k, v in trainer.pretrainer.state_dict().items()}
    ev = evaluate_task(trainer, "retrieval_ft", trial_key="k")
    assert all(torch.equal(before[k], v) for k, v in trainer.pretrainer.state_dict().items())
    assert ev.protocol.startswith("finetune:itc+itm_rerank@")
    assert set(ev.metrics) == {"mean_recall", "t2i_r1", "i2t_r1"}
    assert evaluate_task(trainer, "retrieval_ft", trial_key="k").metrics == ev.metrics


def test_the_fine_tune_starts_from_the_trials_weights(tmp_path: Path) -> None:
    """A vanishing learning rate: the fine-tuned model scores exactly what the trained trial's
    own model scores (same weights, same protocol), and not what a fresh model of the same
    config and seed would (which the fine-tune's Trainer starts as)."""
    cfg = small(tmp_path, **{"eval.downstream.retrieval_ft.finetune.lr": 1e-12,
                             "eval.downstream.retrieval_ft.finetune.steps": 1,
                             "objectives.mlm.enabled": False})
    fresh = Trainer(cfg, 2, checkpoint_dir=None).evaluate(
        Trainer(cfg, 2, checkpoint_dir=None).bench.test).metrics
    trainer = Trainer(cfg, 2, checkpoint_dir=None)
    trainer.run()  # 3 steps at the trial's lr: weights a fresh model does not have
    trained = trainer.evaluate(trainer.bench.test).metrics
    assert trained["mean_recall"] != fresh["mean_recall"]
    ev = evaluate_task(trainer, "retrieval_ft", trial_key="k")
    assert ev.metrics["mean_recall"] == pytest.approx(trained["mean_recall"] / 100, abs=1e-6)


@pytest.mark.parametrize("arch", ["albef", "mome"])
def test_grounding_can_read_the_cross_attention_on_either_architecture(
    tmp_path: Path, arch: str
) -> None:
    cfg = small(tmp_path, **{"eval.downstream.grounding.proposals": "cross_attention",
                             "model.arch": arch})
    trainer = Trainer(cfg, 0, checkpoint_dir=None)
    ev = evaluate_task(trainer, "grounding", trial_key="k")
    assert 0.0 <= ev.metrics["accuracy"] <= 1.0
    plain = evaluate_task(Trainer(small(tmp_path, **{"model.arch": arch}), 0,
                                  checkpoint_dir=None), "grounding", trial_key="k")
    assert ev.key != plain.key  # the proposal states are part of the evaluation's settings
