"""The downstream tasks as ``finetune.Task``: each binds one task's splits to its head, its
training loss and its metrics (``downstream.metrics``), over the trial's own tokenizer.

Texts are tokenised with the pretraining tokenizer (a WordPiece vocabulary learned on the
training captions: a word it never saw is spelled in pieces, as a real checkpoint meets new
words in a fine-tuning set) and truncated to the trial's ``max_text_len``; the share truncated
is reported, so a task that loses words to truncation says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.data.types import normalize
from trainer.downstream import metrics as M
from trainer.downstream.heads import (
    AnswerHead,
    EntailmentHead,
    PairHead,
    ProposalHead,
    box_attention,
    patch_box_weights,
)
from trainer.downstream.tasks.types import xywh
from trainer.model.interface import VisionLanguageModel
from trainer.model.pooling import Pooling, pool_tokens

Tokenize = Callable[[list[str]], tuple[Tensor, Tensor]]
ProposalStates = Literal["fused_image", "image", "cross_attention"]


@dataclass(frozen=True)
class Reader:
    """How a task reads the trunk: the trial's tokenizer, fusion readout, patch size, device."""

    tokenize: Tokenize
    readout: Pooling
    patch_size: int
    device: torch.device
    eval_batch: int = 256


@dataclass
class Texts:
    """One split's tokenised texts, and how many lost tokens to truncation."""

    ids: Tensor
    mask: Tensor
    truncated: float

    @classmethod
    def of(cls, reader: Reader, texts: Sequence[str]) -> Texts:
        ids, mask = reader.tokenize(list(texts))
        full = mask[:, -1].bool()  # the last slot is used: the [SEP] may have been cut in
        return cls(ids, mask, float(full.float().mean()) if len(texts) else 0.0)

    def rows(self, idx: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        mask = self.mask[idx]
        length = max(1, int(mask.sum(dim=1).max()))
        return self.ids[idx, :length].to(device), mask[:, :length].to(device)


def images_of(array: np.ndarray, index: Tensor, device: torch.device) -> Tensor:
    return normalize(torch.from_numpy(np.ascontiguousarray(array[index.numpy()]))).to(device)


def readout(model: VisionLanguageModel, reader: Reader, images: Tensor, ids: Tensor,
            mask: Tensor) -> Tensor:
    """The fused readout of (image, text) rows: what ITM's head reads."""
    fused = model.fuse(model.encode_text(ids, mask), mask, model.encode_image(images))
    return pool_tokens(fused, reader.readout, mask)


def _chunks(n: int, size: int) -> list[Tensor]:
    return [torch.arange(i, min(n, i + size)) for i in range(0, n, size)]


class SplitTask:
    """What every task shares: its splits' tokenised texts, per-split targets (one class index
    per item), cross-entropy on the training split, and argmax predictions over a split in
    evaluation batches. Subclasses give ``logits`` and ``evaluate``."""

    name: str
    primary = "accuracy"

    def __init__(self, splits: dict[str, Any], reader: Reader, text: Callable[[Any], str],
                 target: Callable[[Any], int]) -> None:
        self.splits, self.reader = splits, reader
        self.texts = {s: Texts.of(reader, [text(i) for i in sp.items]) for s, sp in splits.items()}
        self.targets = {s: torch.tensor([target(i) for i in sp.items])
                        for s, sp in splits.items()}

    def train_size(self) -> int:
        return len(self.splits["train"])

    def logits(self, trunk: VisionLanguageModel, head: nn.Module, split: str, idx: Tensor
               ) -> Tensor:
        raise NotImplementedError

    def loss(self, trunk: VisionLanguageModel, head: nn.Module, idx: Tensor) -> Tensor:
        logits = self.logits(trunk, head, "train", idx)
        return F.cross_entropy(logits.float(), self.targets["train"][idx].to(logits.device))

    def predict(self, trunk: VisionLanguageModel, head: nn.Module, split: str) -> list[int]:
        out: list[int] = []
        for idx in _chunks(len(self.splits[split].items), self.reader.eval_batch):
            out.extend(self.logits(trunk, head, split, idx).argmax(-1).cpu().tolist())
        return out


class ClassifierTask(SplitTask):
    """A task whose answer is one class of a fixed list, read from one (image, text) readout:
    VQA (classes = the answer list) and visual entailment (the three labels)."""

    def __init__(self, name: str, splits: dict[str, Any], reader: Reader, *,
                 classes: Sequence[str], text: Callable[[Any], str],
                 label: Callable[[Any], str], head: Callable[[int, int], nn.Module],
                 metric: Callable[[list[str], list[Any]], dict[str, float]]) -> None:
        self.name, self.classes = name, list(classes)
        self._head, self._metric = head, metric
        index = {c: k for k, c in enumerate(self.classes)}
        super().__init__(splits, reader, text, lambda i: index.get(label(i), -1))
        self.images = {s: torch.tensor([i.image for i in sp.items]) for s, sp in splits.items()}
        if bool((self.targets["train"] < 0).any()):
            raise ValueError(f"{name}: a training label is outside the class list")

    def head(self, trunk: VisionLanguageModel) -> nn.Module:
        return self._head(trunk.text_dim, len(self.classes))

    def logits(self, trunk: VisionLanguageModel, head: nn.Module, split: str, idx: Tensor
               ) -> Tensor:
        dev = self.reader.device
        ids, mask = self.texts[split].rows(idx, dev)
        images = images_of(self.splits[split].images, self.images[split][idx], dev)
        return head(readout(trunk, self.reader, images, ids, mask))

    def evaluate(self, trunk: VisionLanguageModel, head: nn.Module, split: str
                 ) -> dict[str, float]:
        predicted = [self.classes[k] for k in self.predict(trunk, head, split)]
        out = self._metric(predicted, list(self.splits[split].items))
        out["truncated"] = self.texts[split].truncated
        return out


def vqa_task(splits: dict[str, Any], reader: Reader) -> ClassifierTask:
    """VQA as classification over the training split's closed answer list (UNITER, VLMo);
    scored with the official VQA accuracy (one exact answer per generated question)."""

    def metric(predicted: list[str], items: list[Any]) -> dict[str, float]:
        return {"accuracy": M.vqa_dataset_accuracy(predicted, [i.answers for i in items])}

    return ClassifierTask("vqa", splits, reader, classes=splits["train"].answers,
                          text=lambda i: i.question, label=lambda i: i.answer,
                          head=AnswerHead, metric=metric)


def ve_task(splits: dict[str, Any], reader: Reader) -> ClassifierTask:
    """SNLI-VE: (image, hypothesis) -> entailment / neutral / contradiction, ALBEF's head."""

    def metric(predicted: list[str], items: list[Any]) -> dict[str, float]:
        return {"accuracy": M.ve_accuracy(predicted, [i.label for i in items])}

    return ClassifierTask("ve", splits, reader, classes=M.VE_LABELS,
                          text=lambda i: i.sentence, label=lambda i: i.label,
                          head=EntailmentHead, metric=metric)


class PairTask(SplitTask):
    """NLVR: one statement, two images; the statement is fused with each image separately
    and the two readouts are joined (``PairHead``)."""

    name = "nlvr"

    def __init__(self, splits: dict[str, Any], reader: Reader) -> None:
        super().__init__(splits, reader, lambda i: i.sentence, lambda i: int(i.label))
        self.pairs = {s: torch.tensor([list(i.images) for i in sp.items])
                      for s, sp in splits.items()}

    def head(self, trunk: VisionLanguageModel) -> nn.Module:
        return PairHead(trunk.text_dim)

    def logits(self, trunk: VisionLanguageModel, head: nn.Module, split: str, idx: Tensor
               ) -> Tensor:
        dev = self.reader.device
        ids, mask = self.texts[split].rows(idx, dev)
        pair = self.pairs[split][idx]
        both = images_of(self.splits[split].images, pair.t().reshape(-1), dev)  # left, right
        states = readout(trunk, self.reader, both, ids.repeat(2, 1), mask.repeat(2, 1))
        left, right = states.chunk(2)
        return head(left, right)

    def evaluate(self, trunk: VisionLanguageModel, head: nn.Module, split: str
                 ) -> dict[str, float]:
        items = self.splits[split].items
        predicted = [bool(k) for k in self.predict(trunk, head, split)]
        labels = [i.label for i in items]
        return {"accuracy": M.nlvr2_accuracy(predicted, labels),
                "consistency": M.nlvr2_consistency(predicted, labels,
                                                   [i.statement_id for i in items]),
                "truncated": self.texts[split].truncated}


class GroundingTask(SplitTask):
    """Referring expressions over given proposals: each proposal is the box-weighted mean of
    the image encoder's patch states (or, ``proposals="fused_image"``, of the image-side fused
    states, ``fuse_image``), scored against the expression's fused readout;
    ``proposals="cross_attention"`` adds how much the expression's word -> image
    cross-attention (the last fusion layer's, ``relation_attention``) gathers in each box, the
    map ALBEF's Grad-CAM grounding reads, to the image-states score. The chosen
    proposal's box is a hit at IoU >= 0.5 with the referred object's."""

    name = "grounding"

    def __init__(self, splits: dict[str, Any], reader: Reader,
                 proposals: ProposalStates = "image") -> None:
        super().__init__(splits, reader, lambda i: i.text, lambda i: i.target)
        self.proposals = proposals
        self.boxes: dict[str, Tensor] = {}
        self.valid: dict[str, Tensor] = {}
        for s, sp in splits.items():
            k = max(len(i.proposals) for i in sp.items)
            boxes = torch.zeros(len(sp.items), k, 4)
            valid = torch.zeros(len(sp.items), k, dtype=torch.bool)
            for row, item in enumerate(sp.items):
                boxes[row, :len(item.proposals)] = torch.tensor(item.proposals)
                valid[row, :len(item.proposals)] = True
            self.boxes[s], self.valid[s] = boxes, valid
        self.images = {s: torch.tensor([i.image for i in sp.items]) for s, sp in splits.items()}

    def head(self, trunk: VisionLanguageModel) -> nn.Module:
        return ProposalHead(trunk.text_dim, attention=self.proposals == "cross_attention")

    def logits(self, trunk: VisionLanguageModel, head: nn.Module, split: str, idx: Tensor
               ) -> Tensor:
        dev = self.reader.device
        ids, mask = self.texts[split].rows(idx, dev)
        images = images_of(self.splits[split].images, self.images[split][idx], dev)
        image_embeds = trunk.encode_image(images)
        text_embeds = trunk.encode_text(ids, mask)
        fused_text = trunk.fuse(text_embeds, mask, image_embeds)
        if self.proposals == "fused_image":  # image tokens attending to the expression
            patches = trunk.fuse_image(text_embeds, mask, image_embeds)[:, 1:]
        else:  # the image encoder's own patch states, what ITC and the fusion read
            patches = trunk.image_states(image_embeds)[:, 1:]
        weights = patch_box_weights(self.boxes[split][idx].to(dev), images.shape[-1],
                                    self.reader.patch_size).to(patches.dtype)
        proposals = weights @ patches  # [B,K,P] @ [B,P,D]
        attention = None
        if self.proposals == "cross_attention":
            cross = trunk.relation_attention(images, text_embeds, mask, image_embeds).cross
            attention = box_attention(cross[:, :, 1:], mask, weights)
        return head(pool_tokens(fused_text, self.reader.readout, mask), proposals,
                    self.valid[split][idx].to(dev), attention)

    def evaluate(self, trunk: VisionLanguageModel, head: nn.Module, split: str
                 ) -> dict[str, float]:
        items = self.splits[split].items
        chosen = self.predict(trunk, head, split)
        predicted = [xywh(item.proposals[k]) for item, k in zip(items, chosen, strict=True)]
        return {"accuracy": M.grounding_accuracy(predicted, [i.box for i in items]),
                "truncated": self.texts[split].truncated}


BUILDERS: dict[str, Callable[[dict[str, Any], Reader], Any]] = {
    "vqa": vqa_task, "ve": ve_task, "nlvr": PairTask, "grounding": GroundingTask}
"""Task name -> the ``finetune.Task`` over its splits."""
