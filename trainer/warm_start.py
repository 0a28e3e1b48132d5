"""The warm start: unimodal pretraining on the benchmark's own data, shared by every arm.

None of the papers we reproduce trains from scratch: ALBEF starts from DeiT and BERT, VILLA from
BERT, VLMo from BEiT. This is that start in miniature. On the training split only, the image
path learns to name each patch's shape and colour (the `shapes` label maps: the ImageNet labels
of our world) and the text path learns masked language modelling on the captions. No
image-text pairing is seen, so no cross-modal objective gets a head start.

The result is content-addressed: ``warm_start_key`` hashes the data, the encoders' shapes, the
recipe (``init``), its seed and the trainer's code. It is computed once per key, under a file
lock, written atomically beside the data, and every trial with that key loads it: the arms of
an experiment and its seeds all start from the same encoders, as every seed of a paper's
ablation starts from the same pretrained weights. Only what the stage trained is stored (the
parameters that received a gradient); projections, heads and cross-attention keep the trial's
own random init, and so do the fusion layers unless ``init.fusion`` runs the text stage
through them (ALBEF's fusion starts from BERT's top layers). With a tracking URI the
computation is logged as its own MLflow run, weights attached, found again by its key so a
retry never makes a second run.

With ``ABLATE_STORAGE_URI`` set (the service's shared storage) the file lives there instead,
under ``warm_start/<key>.pt``, so every node loads the same one. The lock is then a file lock
on the node's local cache: it makes the computation once per node, not once per cluster. Two
nodes missing it at the same time both compute it; that is acceptable because the stage is
deterministic and content-addressed (same key: same data, recipe, seed and code, so the same
tensors), each write is atomic (``trainer.storage``) and a reader gets one whole file or the
other. At worst one node's work is wasted, and each logs its own MLflow run for the key.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import get_cosine_schedule_with_warmup

from trainer import storage
from trainer.config import ConfigError, TrainConfig
from trainer.data import Benchmark, load_benchmark, patch_labels
from trainer.data.benchmark import cache_dir
from trainer.keys import code_fingerprint
from trainer.model.albef import ALBEFModel
from trainer.model.build import build_model
from trainer.model.forward import VocabInfo
from trainer.objectives.mlm import IGNORE, MLMConfig, MLMHead, mask_tokens

WARM_START_EXPERIMENT = "ablate-warm-starts"
MIN_FOREGROUND = 0.25
"""A patch is labelled with the object covering at least this share of it (small objects rarely
hold a majority of an 8x8 patch)."""


def vocab_info(bench: Benchmark) -> VocabInfo:
    """The token ids objectives need, from the benchmark's tokenizer."""
    tok = bench.tokenizer
    return VocabInfo(
        size=len(tok),
        pad_id=tok.pad_token_id,
        cls_id=tok.cls_token_id,
        sep_id=tok.sep_token_id,
        mask_id=tok.mask_token_id,
        unk_id=tok.unk_token_id,
    )


@dataclass
class WarmStart:
    key: str
    path: storage.Location
    state: dict[str, Tensor]
    """Only the parameters the stage trained, by their name in the model."""
    summary: dict[str, Any]
    """Recipe, final losses and accuracies, wall time: what the MLflow run records."""


def warm_start_key(cfg: TrainConfig) -> str:
    """Hash of everything that changes the warm start's weights, and nothing else: objectives,
    optimiser, schedule, evaluation and the ITC pooling/projection do not enter, so experiments
    that differ only there share one warm start."""
    model = cfg.model.model_dump(mode="json")
    for section in ("vision", "text"):
        model[section].pop("pooling", None)
    model.pop("embed_dim", None)
    model.pop("momentum", None)
    data = cfg.data.model_dump(mode="json")
    data.pop("batch_size", None)
    payload = {"data": data, "model": model, "init": cfg.init.model_dump(mode="json"),
               "code": code_fingerprint()}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def warm_start_path(cfg: TrainConfig) -> Path:
    """The warm start's file in the local cache (beside the data)."""
    return cache_dir(cfg.data) / "warm_start" / f"{warm_start_key(cfg)}.pt"


def warm_start_location(cfg: TrainConfig) -> storage.Location:
    """Where the warm start is read and written: under ``$ABLATE_STORAGE_URI`` when set (every
    node sees it), else the local cache."""
    root = os.environ.get(storage.STORAGE_URI_ENV)
    if not root:
        return warm_start_path(cfg)
    return storage.join(storage.check_uri(root), "warm_start", f"{warm_start_key(cfg)}.pt")


def check_supported(cfg: TrainConfig) -> None:
    """The stage needs patch labels (the `shapes` benchmark) and random-init encoders."""
    if cfg.data.dataset != "shapes":
        raise ConfigError(
            "init.warm_start",
            "needs the shapes benchmark's patch labels; for real data load pretrained "
            "encoders with model.vision.pretrained / model.text.pretrained",
        )
    if cfg.model.vision.pretrained or cfg.model.text.pretrained:
        raise ConfigError(
            "init.warm_start", "the encoders already load pretrained weights; turn one off"
        )


def ensure_warm_start(
    cfg: TrainConfig, bench: Benchmark | None = None, *, tracking_uri: str | None = None
) -> WarmStart:
    """The warm start for ``cfg``: read from the cache, or computed once (other processes
    asking for the same key wait on the lock, then read the file)."""
    check_supported(cfg)
    loc = warm_start_location(cfg)
    key = warm_start_key(cfg)
    if not storage.exists(loc):
        with _locked(warm_start_path(cfg).with_suffix(".lock")):  # this node's processes
            if not storage.exists(loc):
                _compute_and_store(cfg, bench or load_benchmark(cfg.data), loc, key, tracking_uri)
    with storage.open_read(loc) as fh:
        blob = torch.load(fh, map_location="cpu", weights_only=True)
    return WarmStart(key, loc, blob["state"], json.loads(blob["summary"]))


def load_into(model: nn.Module, warm: WarmStart) -> None:
    """Copy the warm start's tensors into ``model``; every stored name must exist there."""
    result = model.load_state_dict(warm.state, strict=False)
    if result.unexpected_keys:
        raise ValueError(
            f"init.warm_start: {warm.path} holds tensors this model lacks "
            f"({result.unexpected_keys[:3]}...)"
        )


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _compute_and_store(
    cfg: TrainConfig, bench: Benchmark, loc: storage.Location, key: str,
    tracking_uri: str | None,
) -> None:
    run = _open_run(cfg, key, tracking_uri) if tracking_uri else None
    ok = False
    try:
        with torch.random.fork_rng(devices=[]):
            state, summary = train_warm_start(cfg, bench, logger=run)
        buffer = io.BytesIO()
        torch.save({"state": state, "summary": json.dumps(summary)}, buffer)
        storage.write_bytes(loc, buffer.getvalue(), mode=0o644)  # cache files are shared
        if run is not None:
            run.log_json("warm_start_summary.json", summary)
            if storage.is_remote(loc):
                with tempfile.TemporaryDirectory() as tmp:
                    run.log_artifact(storage.copy_to_local(loc, Path(tmp) / f"{key}.pt"))
            else:
                run.log_artifact(Path(loc))
        ok = True
    finally:
        if run is not None:
            run.close(ok)


def _open_run(cfg: TrainConfig, key: str, tracking_uri: str) -> Any:
    from trainer.tracking import TrialRun

    run = TrialRun(
        tracking_uri, trial_key=f"warm-start-{key}", experiment_name=WARM_START_EXPERIMENT,
        run_name=f"warm start {key[:8]}", tags={"warm_start_key": key},
    )
    run.open({f"init.{k}": v for k, v in cfg.init.model_dump().items()}
             | {"data.num_train_images": cfg.data.num_train_images})
    return run


class _Heads(nn.Module):
    """What the stage trains on top of the encoders, and throws away afterwards."""

    def __init__(self, vision_dim: int, text_dim: int, classes: tuple[int, int], vocab: int):
        super().__init__()
        self.shape = nn.Linear(vision_dim, classes[0])
        self.colour = nn.Linear(vision_dim, classes[1])
        self.mlm = MLMHead(text_dim, vocab)


def train_warm_start(
    cfg: TrainConfig, bench: Benchmark, *, logger: Any = None
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Train the image path on patch labels and the text path by MLM; return the trained
    tensors (by model name) and a summary. Seeds torch's global RNG: call it inside
    ``torch.random.fork_rng`` when the caller's stream matters."""
    check_supported(cfg)
    split = bench.train
    if split.label_maps is None:
        raise ConfigError("init.warm_start", "the training split has no label maps")
    init = cfg.init
    torch.manual_seed(init.seed)
    vocab: VocabInfo = vocab_info(bench)
    model = build_model(cfg.model, vocab_size=vocab.size, image_size=cfg.data.image_size,
                        max_len=cfg.data.max_text_len)
    labels = patch_labels(split.label_maps, cfg.model.vision.patch_size, MIN_FOREGROUND)
    classes = (int(labels[:, 0].max()) + 1, int(labels[:, 1].max()) + 1)
    heads = _Heads(model.vision_dim, model.text_dim, classes, vocab.size)
    params = [p for p in [*model.parameters(), *heads.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=init.lr, weight_decay=0.02)
    schedule = get_cosine_schedule_with_warmup(
        optimizer, max(1, init.steps // 10), init.steps
    )
    ids, mask = bench.tokenize(split.captions)
    g = torch.Generator().manual_seed(init.seed)
    mlm_cfg = MLMConfig()
    started = time.perf_counter()
    model.train()
    last: dict[str, float] = {}
    for step in range(1, init.steps + 1):
        images = torch.randint(split.num_images, (init.batch_size,), generator=g)
        patches = model.image_states(model.encode_image(split.load_images(images)))[:, 1:]
        target = labels[images]  # [B,2,P]
        shape_loss = F.cross_entropy(heads.shape(patches).flatten(0, 1), target[:, 0].flatten())
        colour_loss = F.cross_entropy(
            heads.colour(patches).flatten(0, 1), target[:, 1].flatten()
        )
        rows = torch.randint(len(ids), (init.batch_size,), generator=g)
        length = int(mask[rows].sum(dim=1).max())
        row_ids, row_mask = ids[rows, :length], mask[rows, :length]
        masked, mlm_labels = mask_tokens(row_ids, vocab, mlm_cfg, generator=g)
        states = model.text_states(model.encode_text(masked, row_mask), row_mask)
        if init.fusion and isinstance(model, ALBEFModel):
            states = model.fuse_text_only(states, row_mask)
        logits = heads.mlm(states)
        chosen = mlm_labels != IGNORE
        mlm_loss = F.cross_entropy(logits[chosen], mlm_labels[chosen]) if chosen.any() \
            else logits.sum() * 0.0
        loss = shape_loss + colour_loss + mlm_loss
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(f"init.warm_start: the loss diverged at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 10 == 0 or step == init.steps:
            with torch.no_grad():
                last = {
                    "warm_loss_shape": float(shape_loss), "warm_loss_colour": float(colour_loss),
                    "warm_loss_mlm": float(mlm_loss),
                    "warm_acc_shape": _accuracy(heads.shape(patches), target[:, 0]),
                    "warm_acc_colour": _accuracy(heads.colour(patches), target[:, 1]),
                    "warm_acc_mlm": _accuracy(logits[chosen], mlm_labels[chosen]),
                }
            if logger is not None:
                logger.log_metrics(last, step)
    trained = {name: p.detach().clone() for name, p in model.named_parameters()
               if p.grad is not None}
    summary = {"recipe": init.model_dump(), "final": last, "tensors": len(trained),
               "seconds": round(time.perf_counter() - started, 2)}
    return trained, summary


def _accuracy(logits: Tensor, target: Tensor) -> float:
    target = target.reshape(-1)
    if target.numel() == 0:
        return float("nan")
    return float((logits.reshape(target.numel(), -1).argmax(-1) == target).float().mean())
