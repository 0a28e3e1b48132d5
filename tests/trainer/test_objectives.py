"""Each objective's loss against its formula on hand-made tensors, and its switches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.trainer.helpers import VOCAB, count_calls, random_batch, tiny
from trainer.model.momentum import momentum_update
from trainer.model.pretrainer import Pretrainer
from trainer.objectives.itc import itc_loss
from trainer.objectives.itm import negative_weights, sample_negatives
from trainer.objectives.mlm import IGNORE, MLMConfig, mask_tokens, mlm_loss


def _feats(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_itc_in_batch_matches_clip_formula() -> None:
    img, txt = _feats(5, 8, 1), _feats(5, 8, 2)
    temp = 0.07
    pos = torch.eye(5, dtype=torch.bool)
    got = itc_loss(img, txt, img, txt, pos, temp)
    logits = img @ txt.t() / temp
    labels = torch.arange(5)
    want = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    assert torch.allclose(got, want, atol=1e-6)


def test_itc_with_queue_keys_and_distillation_matches_formula() -> None:
    b, k, d, temp, alpha = 3, 7, 4, 0.1, 0.4
    img, txt = _feats(b, d, 3), _feats(b, d, 4)
    img_keys, txt_keys = _feats(k, d, 5), _feats(k, d, 6)
    pos = torch.zeros(b, k, dtype=torch.bool)
    pos[torch.arange(b), torch.arange(b)] = True
    pos[0, 5] = True  # a queued key of the same image is a positive too
    soft_i2t = F.softmax(torch.randn(b, k), dim=1)
    soft_t2i = F.softmax(torch.randn(b, k), dim=1)
    got = itc_loss(img, txt, img_keys, txt_keys, pos, temp, soft_i2t, soft_t2i, alpha)
    hard = pos.double() / pos.double().sum(1, keepdim=True)
    total = 0.0
    for sim, soft in ((img @ txt_keys.t() / temp, soft_i2t), (txt @ img_keys.t() / temp, soft_t2i)):
        target = alpha * soft.double() + (1 - alpha) * hard
        for i in range(b):
            logz = math.log(sum(math.exp(float(s)) for s in sim[i]))
            total += -sum(float(target[i, j]) * (float(sim[i, j]) - logz) for j in range(k)) / b
    assert float(got) == pytest.approx(total / 2, rel=1e-5)


def test_itm_negatives_never_share_an_image() -> None:
    ids = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4])
    positives = ids[:, None] == ids[None, :]
    sim = torch.randn(8, 8) * 5
    sim[positives] = 100.0  # make true pairs by far the most "similar"
    torch.manual_seed(0)
    for hard in (True, False):
        w = negative_weights(sim if hard else None, positives, 0.07)
        assert torch.all(w[positives] == 0)
        for _ in range(300):
            rows, cols = sample_negatives(w)
            assert len(rows) == 8
            assert not positives[rows, cols].any()


def test_itm_hard_negatives_follow_similarity() -> None:
    positives = torch.eye(4, dtype=torch.bool)
    sim = torch.zeros(4, 4)
    sim[0, 3] = 1.0  # row 0's hardest negative is column 3
    w = negative_weights(sim, positives, 0.1)
    torch.manual_seed(0)
    picks = torch.stack([sample_negatives(w)[1][0] for _ in range(400)])
    assert (picks == 3).float().mean() > 0.9
    uniform = negative_weights(None, positives, 0.1)
    picks = torch.stack([sample_negatives(uniform)[1][0] for _ in range(600)])
    assert 0.2 < (picks == 3).float().mean() < 0.47


def test_itm_row_without_any_negative_is_dropped() -> None:
    positives = torch.ones(3, 3, dtype=torch.bool)
    rows, cols = sample_negatives(negative_weights(None, positives, 0.07))
    assert rows.numel() == 0 and cols.numel() == 0


def test_mlm_masking_follows_bert_80_10_10() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB.size, (400, 50), generator=g)
    ids[:, 0] = VOCAB.cls_id
    ids[:, -1] = VOCAB.pad_id
    masked, labels = mask_tokens(ids, VOCAB, MLMConfig(), generator=g)
    chosen = labels != IGNORE
    assert not chosen[:, 0].any() and not chosen[:, -1].any()  # specials never chosen
    assert chosen.float().sum() / (400 * 48) == pytest.approx(0.15, abs=0.01)
    assert torch.equal(labels[chosen], ids[chosen])
    to_mask = (masked == VOCAB.mask_id) & chosen
    unchanged = (masked == ids) & chosen
    n = chosen.sum().item()
    assert to_mask.sum().item() / n == pytest.approx(0.8, abs=0.02)
    # 10% random (a random draw can hit the original token, ~1/60 of the time) + 10% unchanged
    assert unchanged.sum().item() / n == pytest.approx(0.1 + 0.1 / VOCAB.size, abs=0.02)
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_mlm_loss_matches_formula() -> None:
    logits = torch.randn(2, 5, 11)
    labels = torch.full((2, 5), IGNORE)
    labels[0, 1], labels[1, 3] = 4, 7
    hard = F.cross_entropy(logits.view(-1, 11), labels.view(-1), ignore_index=IGNORE)
    assert torch.allclose(mlm_loss(logits, labels), hard, atol=1e-6)
    soft = F.softmax(torch.randn(2, 5, 11), dim=-1)
    chosen = labels != IGNORE
    soft_ce = -(F.log_softmax(logits[chosen], -1) * soft[chosen]).sum(-1).mean()
    want = 0.6 * hard + 0.4 * soft_ce
    assert torch.allclose(mlm_loss(logits, labels, soft, 0.4), want, atol=1e-6)


def test_momentum_update_is_an_ema() -> None:
    online, ema = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    before = ema.weight.detach().clone()
    momentum_update([(online, ema)], 0.9)
    assert torch.allclose(ema.weight, 0.9 * before + 0.1 * online.weight)


# ---- switches: an objective that is off has no loss term and runs nothing ------------------

def _calls(pt: Pretrainer) -> dict[str, int]:
    modules = {
        "vision": pt.model.vision, "text": pt.model.text, "fusion": pt.model.fusion,
        "vision_proj": pt.model.vision_proj, "text_proj": pt.model.text_proj,
    }
    if pt.model_m is not None:
        modules["momentum"] = pt.model_m.vision
    for name, obj in pt.objectives.items():
        modules[f"objective_{name}"] = obj
    return count_calls(modules)


def _step(**dotted: object) -> tuple[Pretrainer, dict[str, int], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**dotted), VOCAB)
    counts = _calls(pt)
    out = pt(random_batch(), alpha_ramp=1.0, step=0)
    out.loss.backward()
    return pt, counts, out.terms


def test_full_model_runs_every_part() -> None:
    pt, calls, terms = _step()
    assert set(terms) == {"loss_itc", "loss_itm", "loss_mlm"}
    assert calls["fusion"] == 2  # ITM (positives + negatives in one pass) and MLM
    assert calls["vision"] == 1  # shared by every objective
    assert calls["momentum"] >= 1


def test_itm_off_removes_its_term_and_its_fusion_pass() -> None:
    pt, calls, terms = _step(**{"objectives.itm.enabled": False})
    assert "loss_itm" not in terms and "itm" not in pt.objectives
    assert calls["fusion"] == 1


def test_mlm_off_removes_its_term_and_its_fusion_pass() -> None:
    pt, calls, terms = _step(**{"objectives.mlm.enabled": False})
    assert "loss_mlm" not in terms and "mlm" not in pt.objectives
    assert calls["fusion"] == 1
    assert calls["text"] == 1  # MLM's masked-text pass is gone


def test_itc_off_without_hard_negatives_never_projects() -> None:
    pt, calls, terms = _step(**{
        "objectives.itc.enabled": False, "objectives.itm.hard_negatives": False,
        "objectives.mlm.distill": False,
    })
    assert "loss_itc" not in terms
    assert "vision_proj" not in calls and "text_proj" not in calls
    assert pt.model_m is None  # no queue, no distillation: no momentum model at all


def test_distillation_off_builds_no_momentum_model() -> None:
    pt, calls, _ = _step(**{
        "objectives.itc.queue": False, "objectives.itc.distill": False,
        "objectives.mlm.distill": False,
    })
    assert pt.model_m is None and "momentum" not in calls
    assert pt.objectives["mlm"].head_m is None


def test_weights_scale_each_term() -> None:
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**{"objectives.itc.weight": 0.0, "objectives.mlm.weight": 2.0}), VOCAB)
    pt.eval()  # no momentum update, no enqueue: two identical forwards
    torch.manual_seed(1)
    out = pt(random_batch(), alpha_ramp=1.0, step=0)
    want = out.terms["loss_itm"] + 2.0 * out.terms["loss_mlm"]
    assert torch.allclose(out.loss.detach(), want, atol=1e-5)


def test_queue_wraps_around_and_stores_image_ids() -> None:
    pt = Pretrainer(tiny(**{"objectives.itc.queue": True, "objectives.itc.queue_size": 8}), VOCAB)
    itc = pt.objectives["itc"]
    for start in (0, 6, 12):
        itc._enqueue(_feats(6, 64, start), _feats(6, 64, start + 1), torch.arange(start, start + 6))
    # 18 keys through a queue of 8: slots hold the newest ids 10..17 (ptr at 18 % 8 = 2)
    assert sorted(itc.idx_queue.tolist()) == list(range(10, 18))
    assert int(itc.queue_ptr) == 2
