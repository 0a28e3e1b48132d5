"""ALBEF's training formulas rebuilt by hand (numpy, explicit targets), not from our code:
the ITM loss and its labels, the distillation alpha ramp, the features ITC contrasts with its
queue on, and the similarity ITM's hard negatives are drawn from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from tests.trainer.helpers import VOCAB, random_batch, tiny
from trainer.config import build_config
from trainer.data import Benchmark, load_benchmark
from trainer.loop import Trainer
from trainer.model.forward import Batch, StepContext
from trainer.model.pretrainer import Pretrainer
from trainer.objectives.base import ObjectiveEnv
from trainer.objectives.itc import ITC


def _unit(n: int, d: int, seed: int) -> Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def _row_of(x: Tensor, rows: Tensor) -> int:
    """Which row of ``rows`` the tensor ``x`` is an exact copy of."""
    hits = [i for i in range(len(rows)) if torch.equal(x, rows[i])]
    assert len(hits) == 1
    return hits[0]


def _record_fuse(pt: Pretrainer) -> list[tuple[Tensor, Tensor]]:
    """Capture the (text, image) embeddings of every fusion pass."""
    calls: list[tuple[Tensor, Tensor]] = []
    fuse = pt.model.fuse

    def recording(text: Tensor, mask: Tensor, image: Tensor) -> Tensor:
        calls.append((text.detach().clone(), image.detach().clone()))
        return fuse(text, mask, image)

    pt.model.fuse = recording  # type: ignore[method-assign]
    return calls


def _context(pt: Pretrainer, batch: Batch) -> StepContext:
    ctx = StepContext(pt.model, pt.model_m, batch, alpha_ramp=1.0, step=0)
    ctx.objectives = dict(pt.objectives.items())
    return ctx


# ---- ITM: labels and loss ------------------------------------------------------------------


def test_itm_labels_mark_the_true_pairs_and_loss_is_their_cross_entropy() -> None:
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**{"objectives.itm.hard_negatives": False}), VOCAB)
    b = 6
    batch = random_batch(b, image_ids=[0, 0, 1, 2, 3, 3])
    ctx = _context(pt, batch)
    itm = pt.objectives["itm"]
    fused_pairs = _record_fuse(pt)
    logits: list[Tensor] = []
    itm.head.register_forward_hook(lambda _m, _i, out: logits.append(out.detach()))
    out = itm(ctx)

    (texts, images), = fused_pairs
    assert len(texts) == 3 * b
    ids = batch.image_ids.tolist()
    pairs = [(_row_of(texts[r], ctx.text_embeds.detach()),
              _row_of(images[r], ctx.image_embeds.detach())) for r in range(3 * b)]
    is_match = [ids[t] == ids[i] for t, i in pairs]
    # ALBEF: B positives, then each text with a negative image, then each image with a
    # negative text; labels [1]*B + [0]*2B, and label 1 exactly on the matching pairs
    labels = [1] * b + [0] * (2 * b)
    assert is_match == [bool(y) for y in labels]
    assert [t for t, _ in pairs[b:2 * b]] == list(range(b))
    assert [i for _, i in pairs[2 * b:]] == list(range(b))

    x = logits[0].double().numpy()
    assert x.shape == (3 * b, 2)
    top = x.max(axis=1)
    log_z = top + np.log(np.exp(x - top[:, None]).sum(axis=1))
    want = float(np.mean([log_z[r] - x[r, labels[r]] for r in range(3 * b)]))
    assert float(out.loss.detach()) == pytest.approx(want, rel=1e-5)
    acc = np.mean([int(x[r, 1] > x[r, 0]) == labels[r] for r in range(3 * b)])
    assert out.logs["itm_acc"] == pytest.approx(acc)


# ---- the distillation alpha ramp -----------------------------------------------------------


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Benchmark]:
    root = tmp_path_factory.mktemp("ramp_data")
    return root, load_benchmark(_ramp_config(root).data)


def _ramp_config(root: Path, **dotted: object):  # noqa: ANN202
    # 200 images x 2 captions = 400 pairs; batch 64 -> 6 full batches per epoch
    return build_config("tiny", dotted={
        "data.root": str(root), "data.num_train_images": 200, "data.captions_per_image": 2,
        "data.num_val_images": 4, "data.num_test_images": 4, "data.batch_size": 64,
        "runtime.threads": 1, "init.warm_start": False, **dotted,
    })


@pytest.mark.parametrize(("dotted", "expected"), [
    # ALBEF: alpha * min(1, i / len(data_loader)) during epoch 0, i the batch index
    ({}, {0: 0.0, 1: 1 / 6, 3: 0.5, 5: 5 / 6, 6: 1.0, 7: 1.0, 100: 1.0}),
    ({"optim.accumulation_steps": 2}, {0: 0.0, 1: 1 / 3, 2: 2 / 3, 3: 1.0, 9: 1.0}),
    ({"schedule.alpha_ramp_steps": 10}, {0: 0.0, 5: 0.5, 9: 0.9, 10: 1.0, 20: 1.0}),
    ({"schedule.alpha_ramp_steps": 0}, {0: 1.0, 1: 1.0, 50: 1.0}),
])
def test_alpha_ramp_is_linear_over_the_first_epoch(
    bench: tuple[Path, Benchmark], dotted: dict[str, object], expected: dict[int, float],
) -> None:
    root, data = bench
    trainer = Trainer(_ramp_config(root, **dotted), 0, checkpoint_dir=None, benchmark=data)
    assert len(trainer.train_split.captions) == 400
    assert {s: trainer.alpha_ramp(s) for s in expected} == pytest.approx(expected)


# ---- ITC with the queue: momentum keys, queue ids as positives -----------------------------


def _log_softmax(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=1, keepdims=True))


def _albef_itc(img: Tensor, txt: Tensor, img_keys: Tensor, txt_keys: Tensor,
               targets: np.ndarray, temp: float) -> float:
    """ALBEF: sim = q @ keys.T / temp; loss = mean_rows -sum(log_softmax(sim) * targets),
    averaged over image->text and text->image."""
    i2t = img.double().numpy() @ txt_keys.double().numpy().T / temp
    t2i = txt.double().numpy() @ img_keys.double().numpy().T / temp
    loss_i2t = -(_log_softmax(i2t) * targets).sum(axis=1).mean()
    loss_t2i = -(_log_softmax(t2i) * targets).sum(axis=1).mean()
    return float((loss_i2t + loss_t2i) / 2)


def test_itc_with_queue_contrasts_online_queries_with_momentum_keys_and_queue() -> None:
    temp = 0.1
    cfg = tiny(**{
        "objectives.itc.queue": True, "objectives.itc.queue_size": 6,
        "objectives.itc.distill": False, "objectives.itc.temp": temp,
        "objectives.itc.learnable_temp": False,
    })
    d = cfg.model.embed_dim
    itc = ITC(cfg.objectives.itc, ObjectiveEnv(cfg, VOCAB, 0, 0)).eval()  # eval: no enqueue
    itc.image_queue.copy_(_unit(6, d, 1))
    itc.text_queue.copy_(_unit(6, d, 2))
    itc.idx_queue.copy_(torch.tensor([11, -1, 10, 12, -1, 13]))  # slots 1 and 4 unfilled
    ids = torch.tensor([10, 11, 10])  # pairs 0 and 2 show the same image
    batch = Batch(torch.zeros(3, 3, 4, 4), torch.zeros(3, 2, dtype=torch.long),
                  torch.ones(3, 2, dtype=torch.long), ids)
    ctx = StepContext(None, None, batch, alpha_ramp=1.0, step=0)  # type: ignore[arg-type]
    ctx.image_feat, ctx.text_feat = _unit(3, d, 3), _unit(3, d, 4)
    # momentum keys close to each pair's other modality, online ones not: the two differ
    ctx.image_feat_m = F.normalize(ctx.text_feat + 0.3 * _unit(3, d, 5), dim=1)
    ctx.text_feat_m = F.normalize(ctx.image_feat + 0.3 * _unit(3, d, 6), dim=1)

    got = float(itc(ctx).loss)

    filled = [0, 2, 3, 5]  # queue key ids 11, 10, 12, 13
    img_keys = torch.cat([ctx.image_feat_m, itc.image_queue[filled]])
    txt_keys = torch.cat([ctx.text_feat_m, itc.text_queue[filled]])
    # keys: batch pairs 0,1,2 (ids 10,11,10), then queued ids 11,10,12,13
    targets = np.array([
        [1 / 3, 0, 1 / 3, 0, 1 / 3, 0, 0],  # id 10: both batch pairs and queue slot 2
        [0, 1 / 2, 0, 1 / 2, 0, 0, 0],  # id 11: its pair and queue slot 0
        [1 / 3, 0, 1 / 3, 0, 1 / 3, 0, 0],
    ])
    want = _albef_itc(ctx.image_feat, ctx.text_feat, img_keys, txt_keys, targets, temp)
    assert got == pytest.approx(want, rel=1e-5)
    # the test tells momentum keys from online ones
    online = _albef_itc(ctx.image_feat, ctx.text_feat,
                        torch.cat([ctx.image_feat, itc.image_queue[filled]]),
                        torch.cat([ctx.text_feat, itc.text_queue[filled]]), targets, temp)
    assert abs(online - want) > 1.0

    itc.train()  # ALBEF enqueues the momentum features and their image ids
    itc(ctx)
    assert torch.allclose(itc.image_queue[:3], ctx.image_feat_m)
    assert torch.allclose(itc.text_queue[:3], ctx.text_feat_m)
    assert itc.idx_queue.tolist() == [10, 11, 10, 12, -1, 13]
    assert int(itc.queue_ptr) == 3


# ---- ITM hard negatives: online queries x momentum keys when the queue is on ---------------


@pytest.mark.parametrize("queue", [True, False])
def test_itm_hard_negatives_come_from_the_similarity_itc_scores(queue: bool) -> None:
    torch.manual_seed(0)
    pt = Pretrainer(tiny(**{
        "objectives.itc.queue": queue, "objectives.itc.queue_size": 16,
        "objectives.itc.distill": True, "objectives.itm.hard_negatives": True,
        "objectives.itc.temp": 0.05,
    }), VOCAB)
    b = 4
    ctx = _context(pt, random_batch(b))
    e = torch.eye(b)
    roll = lambda s: e[[(i + s) % b for i in range(b)]]  # noqa: E731 - row i is e_{i+s}
    # online: text i is closest to image i+1, image i to text i-1;
    # momentum keys: text i to image_m i+2, image i to text_m i+1
    ctx.image_feat, ctx.text_feat = e.clone(), roll(1)
    ctx.image_feat_m, ctx.text_feat_m = roll(-1), roll(3)
    fused_pairs = _record_fuse(pt)
    torch.manual_seed(1)
    pt.objectives["itm"](ctx)

    (texts, images), = fused_pairs
    image_embeds, text_embeds = ctx.image_embeds.detach(), ctx.text_embeds.detach()
    neg_image = [_row_of(images[r], image_embeds) for r in range(b, 2 * b)]
    neg_text = [_row_of(texts[r], text_embeds) for r in range(2 * b, 3 * b)]
    if queue:  # ALBEF: softmax(text_feat @ image_feat_m.T), softmax(image_feat @ text_feat_m.T)
        assert neg_image == [(i + 2) % b for i in range(b)]
        assert neg_text == [(i + 1) % b for i in range(b)]
    else:  # ITC's keys are online features: so are the negatives' similarities
        assert neg_image == [(i + 1) % b for i in range(b)]
        assert neg_text == [(i - 1) % b for i in range(b)]
