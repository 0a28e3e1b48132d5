"""Masked patch modelling (MRFR, MRC-kl): formulas on hand-made tensors, masking, switches,
patch labels from the loop, and the teacher requirement on real data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.trainer.helpers import VOCAB, count_calls, random_batch, tiny
from trainer.config import ConfigError, build_config
from trainer.data import labels_from_histograms
from trainer.loop import Trainer, train
from trainer.model.pretrainer import Pretrainer
from trainer.objectives.mpm import draw_patch_mask
from trainer.objectives.mrc_kl import mrc_kl_loss
from trainer.objectives.mrfr import mrfr_loss

ONLY_OFF = {"objectives.itc.enabled": False, "objectives.itm.enabled": False,
            "objectives.mlm.enabled": False}


def test_mrfr_loss_is_mean_squared_error_over_masked_patches() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 4, 3, generator=g), torch.randn(2, 4, 3, generator=g)
    mask = torch.tensor([[True, False, False, True], [False, False, True, False]])
    total, n = 0.0, 0
    for b in range(2):
        for p in range(4):
            if mask[b, p]:
                for d in range(3):
                    total += (float(pred[b, p, d]) - float(target[b, p, d])) ** 2
                    n += 1
    assert float(mrfr_loss(pred, target, mask)) == pytest.approx(total / n, rel=1e-6)


def test_mrc_kl_is_kl_divergence_and_cross_entropy_for_one_hot() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, generator=g)
    soft = F.softmax(torch.randn(5, 4, generator=g), dim=-1)
    p = F.softmax(logits, dim=-1)
    want = sum(float((soft[i] * (soft[i].log() - p[i].log())).sum()) for i in range(5)) / 5
    assert float(mrc_kl_loss(logits, soft)) == pytest.approx(want, rel=1e-5)
    labels = torch.tensor([0, 3, 1, 1, 2])
    one_hot = F.one_hot(labels, 4).float()
    assert torch.allclose(mrc_kl_loss(logits, one_hot), F.cross_entropy(logits, labels))
    assert float(mrc_kl_loss(logits, p)) == pytest.approx(0.0, abs=1e-6)


def test_patch_mask_rate_and_at_least_one_per_image() -> None:
    g = torch.Generator().manual_seed(0)
    mask = draw_patch_mask(500, 16, 0.15, torch.device("cpu"), generator=g)
    assert mask.any(dim=1).all()
    assert float(mask.float().mean()) == pytest.approx(0.15 + 0.85**16 / 16, abs=0.01)


# ---- switches ------------------------------------------------------------------------------

def _calls(pt: Pretrainer) -> dict[str, int]:
    # the final LayerNorm runs in the plain and in the masked/perturbed ViT paths
    return count_calls({"vision": pt.model.vision.layernorm, "text": pt.model.text,
                        "fusion": pt.model.fusion})


def _labelled_batch(mixed: bool = False) -> torch.Tensor:
    """A random batch whose patches each carry one label per channel (shape 0-6, colour 0-8),
    as [B,C,P,9] pixel shares; ``mixed`` gives each patch 5/8 of one label and 3/8 of another."""
    b = random_batch()
    g = torch.Generator().manual_seed(2)
    labels = torch.stack([torch.randint(0, 7, (6, 16), generator=g),
                          torch.randint(0, 9, (6, 16), generator=g)], dim=1)
    hist = F.one_hot(labels, 9).float()
    if mixed:
        other = torch.stack([torch.randint(0, 7, (6, 16), generator=g),
                             torch.randint(0, 9, (6, 16), generator=g)], dim=1)
        hist = 0.625 * hist + 0.375 * F.one_hot(other, 9).float()
    b.patch_histograms = hist
    return b


def _step(**dotted: object) -> tuple[Pretrainer, dict[str, int], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**dotted), VOCAB)
    counts = _calls(pt)
    out = pt(_labelled_batch(), alpha_ramp=1.0, step=0)
    out.loss.backward()
    return pt, counts, out.terms


def test_mpm_off_by_default_costs_nothing() -> None:
    pt, calls, terms = _step()
    assert "loss_mrfr" not in terms and "loss_mrc_kl" not in terms
    assert calls["vision"] == 1 and calls["fusion"] == 2  # as without these objectives
    assert not any(o.needs_patch_histograms for o in pt.objectives.values())


def test_mrfr_on_adds_one_masked_pass_and_learns_its_mask_token() -> None:
    pt, calls, terms = _step(**{"objectives.mrfr.enabled": True})
    assert "loss_mrfr" in terms and float(terms["loss_mrfr"]) > 0
    assert calls["vision"] == 2  # clean (shared, also the target) + masked
    assert calls["fusion"] == 3  # ITM, MLM, and the patch-side fusion of the masked pass
    assert calls["text"] == 2  # conditional masking: the clean caption is the shared one
    assert pt.objectives["mrfr"].mask_token.grad is not None


def test_without_conditional_masking_the_caption_is_masked_too() -> None:
    _, calls, _ = _step(**{**ONLY_OFF, "objectives.mrfr.enabled": True,
                           "objectives.mrfr.conditional_masking": False})
    assert calls["text"] == 1  # only the masked-caption pass: no clean text was needed
    _, calls, _ = _step(**{**ONLY_OFF, "objectives.mrfr.enabled": True})
    assert calls["text"] == 1  # the clean caption, shared


def test_mrc_kl_reads_patch_labels_and_both_channels() -> None:
    pt, _, terms = _step(**{**ONLY_OFF, "objectives.mrc_kl.enabled": True})
    assert set(terms) == {"loss_mrc_kl"}
    assert pt.objectives["mrc_kl"].needs_patch_histograms
    assert set(pt.objectives["mrc_kl"].heads) == {"shape", "colour"}
    # untrained: near the uniform-prediction cross-entropy, averaged over the two channels
    assert float(terms["loss_mrc_kl"]) == pytest.approx((math.log(7) + math.log(9)) / 2, rel=0.3)


def test_mrc_kl_targets_are_patch_distributions_or_their_labels() -> None:
    from trainer.model.forward import StepContext

    b = _labelled_batch(mixed=True)
    hist = b.patch_histograms
    for target in ("distribution", "label"):
        pt = Pretrainer(tiny(**{**ONLY_OFF, "objectives.mrc_kl.enabled": True,
                                "objectives.mrc_kl.target": target}), VOCAB)
        ctx = StepContext(pt.model, None, b, alpha_ramp=1.0, step=0)
        shape, colour = (pt.objectives["mrc_kl"].targets(ctx, n) for n in ("shape", "colour"))
        assert shape.shape == (6, 16, 7) and colour.shape == (6, 16, 9)
        if target == "distribution":
            # a mixed patch keeps both of its labels: KL, not cross-entropy against one class
            assert torch.equal(colour, hist[:, 1])
            assert torch.equal(shape, hist[:, 0, :, :7])
            assert bool((colour.max(-1).values < 1).any())
        else:
            # the majority label, unless a foreground label covers min_foreground (0.25)
            want = labels_from_histograms(hist[:, 1], 0.25)
            assert torch.equal(colour.argmax(-1), want)
            assert not torch.equal(want, hist[:, 1].argmax(-1))  # the rule mattered here
            assert bool((colour.max(-1).values == 1).all())


def test_mrc_kl_on_real_data_without_teacher_names_the_field() -> None:
    cfg = build_config("tiny", dotted={"data.dataset": "coco", "init.warm_start": False,
                                       "objectives.mrc_kl.enabled": True})
    with pytest.raises(ConfigError) as err:
        Pretrainer(cfg, VOCAB)
    assert err.value.field == "objectives.mrc_kl.teacher"


def test_mrc_kl_with_a_teacher_matches_its_softmax(tmp_path: Path) -> None:
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 8, 8), torch.nn.Flatten(2))
    scripted = torch.jit.script(_Teacher(teacher))
    scripted.save(str(tmp_path / "teacher.pt"))
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**{**ONLY_OFF, "objectives.mrc_kl.enabled": True,
                            "objectives.mrc_kl.teacher": str(tmp_path / "teacher.pt"),
                            "objectives.mrc_kl.teacher_classes": 5}), VOCAB)
    b = random_batch()
    from trainer.model.forward import StepContext

    ctx = StepContext(pt.model, None, b, alpha_ramp=1.0, step=0)
    target = pt.objectives["mrc_kl"].targets(ctx, "teacher")
    assert target.shape == (6, 16, 5)
    assert torch.allclose(target, F.softmax(scripted(b.images), dim=-1))
    out = pt(b, alpha_ramp=1.0, step=0)
    assert torch.isfinite(out.loss)


class _Teacher(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).transpose(1, 2)  # [B,P,K]


def test_mpm_runs_on_mome() -> None:
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**{"model.arch": "mome", "objectives.mrfr.enabled": True,
                            "objectives.mrc_kl.enabled": True}), VOCAB)
    out = pt(_labelled_batch(), alpha_ramp=1.0, step=0)
    assert {"loss_mrfr", "loss_mrc_kl"} <= set(out.terms)
    out.loss.backward()


# ---- the loop fills patch labels only when asked -------------------------------------------

SMALL = {
    "data.num_train_images": 60, "data.num_val_images": 10, "data.num_test_images": 20,
    "data.captions_per_image": 2, "data.batch_size": 16, "schedule.steps": 4,
    "schedule.warmup_steps": 1, "eval.rerank_k": 4, "runtime.threads": 1,
    "init.warm_start": False,
}


def test_loop_fills_patch_labels_only_for_objectives_that_need_them(tmp_path: Path) -> None:
    base = {**SMALL, "data.root": str(tmp_path / "data")}
    plain = Trainer(build_config("tiny", dotted=base), 0, checkpoint_dir=None)
    assert plain.train_patch_histograms is None
    assert plain.batch(torch.arange(4)).patch_histograms is None
    cfg = build_config("tiny", dotted={**base, "objectives.mrc_kl.enabled": True})
    t = Trainer(cfg, 0, checkpoint_dir=None, benchmark=plain.bench)
    batch = t.batch(torch.arange(4))
    assert batch.patch_histograms is not None and batch.patch_histograms.shape[:3] == (4, 2, 16)
    image_ids = t.train_split.caption_image[:4]
    from trainer.data import patch_histograms

    want = patch_histograms(t.train_split.label_maps, 8)[image_ids]
    assert torch.equal(batch.patch_histograms, want)
    a = train(cfg, seed=1, benchmark=plain.bench)
    b = train(cfg, seed=1, benchmark=plain.bench)
    assert a.metrics == b.metrics and "final_loss_mrc_kl" in a.metrics
