"""The downstream metrics as their tasks define them (numbers in, numbers out; numpy at most).

Every function refuses an empty input with a ValueError instead of returning nan: an empty
evaluation set is a bug upstream, and a nan would travel silently into the comparisons.
Predictions and ground truth of unequal length are refused the same way.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from trainer.downstream.vqa_answers import clean_whitespace, normalize_answer

VQA_AGREEMENT = 3
"""Annotators who must agree with an answer for full credit: min(1, matches / 3)."""

VE_LABELS = ("entailment", "neutral", "contradiction")
GROUNDING_IOU = 0.5
"""A predicted box grounds an expression when its IoU with the true box is at least this."""


def _paired(name: str, predictions: Sequence[object], truth: Sequence[object]) -> int:
    if len(predictions) != len(truth):
        raise ValueError(
            f"{name}: {len(predictions)} predictions for {len(truth)} ground-truth items"
        )
    if not predictions:
        raise ValueError(f"{name}: no examples to score (empty input)")
    return len(predictions)


# ---- VQA -----------------------------------------------------------------------------------


def vqa_accuracy(
    prediction: str, answers: Sequence[str], *, normalize_unanimous: bool = False
) -> float:
    """The official VQA accuracy of one predicted answer against the human answers.

    Why this form: an answer is fully right when at least 3 of the annotators gave it, and the
    official score averages ``min(1, matches / 3)`` over the leave-one-annotator-out subsets
    (10 subsets of 9 for the usual 10 answers), so that a human's own answer scored against the
    other humans is on the same scale as a model's. Answers are compared after the official
    normalisation (``vqa_answers.normalize_answer``).

    Like the official script (``vqaEval.py`` since 2021), the normalisation is skipped when all
    human answers are the same string after whitespace clean-up: then "Yes" scores 0 against
    ten "yes". That reproduces the evaluation server's numbers; ``normalize_unanimous=True``
    normalises every question instead.

    Other than 10 answers: with n >= 2 answers the same leave-one-out average is taken over
    the n subsets of n - 1 (which is what the official code computes for any n; the 3-agree
    threshold is kept, not rescaled). With a single answer, leaving it out leaves nothing and
    the official formula would score every prediction 0, so the score is instead 1.0 when the
    normalised prediction equals the normalised answer, else 0.0. No answers: ValueError.
    """
    if isinstance(answers, str):
        raise TypeError("vqa_accuracy: answers must be a sequence of strings, not one string")
    if not answers:
        raise ValueError("vqa_accuracy: a question needs at least one human answer")
    humans = [clean_whitespace(a) for a in answers]
    pred = clean_whitespace(prediction)
    if len(humans) == 1:
        return float(normalize_answer(pred) == normalize_answer(humans[0]))
    if normalize_unanimous or len(set(humans)) > 1:
        humans = [normalize_answer(a) for a in humans]
        pred = normalize_answer(pred)
    matches = sum(h == pred for h in humans)
    # leaving annotator k out removes one match exactly when annotator k gave the prediction
    subsets = [min(1.0, (matches - (h == pred)) / VQA_AGREEMENT) for h in humans]
    return sum(subsets) / len(subsets)


def vqa_dataset_accuracy(
    predictions: Sequence[str],
    answers: Sequence[Sequence[str]],
    *,
    normalize_unanimous: bool = False,
) -> float:
    """The mean of ``vqa_accuracy`` over questions: the official overall VQA accuracy (as a
    fraction; the server reports 100 times it, rounded to 2 places)."""
    n = _paired("vqa_dataset_accuracy", predictions, answers)
    return sum(
        vqa_accuracy(p, a, normalize_unanimous=normalize_unanimous)
        for p, a in zip(predictions, answers, strict=True)
    ) / n


# ---- NLVR2 ---------------------------------------------------------------------------------


def _booleans(name: str, values: Sequence[bool] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a flat sequence of booleans, found shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if arr.size and np.issubdtype(arr.dtype, np.integer) and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    raise ValueError(f"{name}: expected booleans (or 0/1), found dtype {arr.dtype}")


def _correct(
    name: str, predictions: Sequence[bool] | np.ndarray, labels: Sequence[bool] | np.ndarray
) -> np.ndarray:
    _paired(name, list(predictions), list(labels))
    return _booleans(f"{name}: predictions", predictions) == _booleans(f"{name}: labels", labels)


def nlvr2_accuracy(
    predictions: Sequence[bool] | np.ndarray, labels: Sequence[bool] | np.ndarray
) -> float:
    """The fraction of (statement, image pair) examples whose truth value is predicted right:
    NLVR2's primary metric."""
    return float(_correct("nlvr2_accuracy", predictions, labels).mean())


def nlvr2_consistency(
    predictions: Sequence[bool] | np.ndarray,
    labels: Sequence[bool] | np.ndarray,
    statements: Sequence[Hashable],
) -> float:
    """The fraction of distinct statements for which every example sharing that statement is
    predicted right (NLVR's consistency): a model that is right by accident on one image pair
    but wrong on another pair for the same sentence does not understand the sentence, and
    accuracy alone would still credit it. ``statements`` holds one grouping key per example
    (the sentence, or an identifier of it); each distinct key counts once, whatever the number
    of its examples."""
    correct = _correct("nlvr2_consistency", predictions, labels)
    if len(statements) != len(correct):
        raise ValueError(
            f"nlvr2_consistency: {len(statements)} statement keys for {len(correct)} examples"
        )
    consistent: dict[Hashable, bool] = {}
    for key, ok in zip(statements, correct.tolist(), strict=True):
        consistent[key] = consistent.get(key, True) and ok
    return sum(consistent.values()) / len(consistent)


# ---- SNLI-VE -------------------------------------------------------------------------------


def ve_accuracy(predictions: Sequence[str], labels: Sequence[str]) -> float:
    """3-way SNLI-VE accuracy (entailment / neutral / contradiction): the task is a balanced
    three-class decision and the papers report plain accuracy. A label outside the three is
    refused rather than counted wrong, since it means the label map is broken."""
    n = _paired("ve_accuracy", predictions, labels)
    for name, values in (("predictions", predictions), ("labels", labels)):
        unknown = sorted({str(v) for v in values if v not in VE_LABELS})
        if unknown:
            raise ValueError(
                f"ve_accuracy: {name}: unknown label(s) {unknown}; expected one of {VE_LABELS}"
            )
    return sum(p == t for p, t in zip(predictions, labels, strict=True)) / n


# ---- grounding (RefCOCO+) --------------------------------------------------------------------

Box = Sequence[float]


def _checked_box(box: Box) -> tuple[float, float, float, float]:
    if len(box) != 4:
        raise ValueError(f"box {list(box)!r}: expected [x, y, w, h]")
    x, y, w, h = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"box {list(box)!r}: coordinates must be finite")
    if w <= 0 or h <= 0:
        raise ValueError(f"box {list(box)!r}: width and height must be positive")
    return x, y, w, h


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes in COCO format ``[x, y, w, h]`` (top-left corner,
    width, height), in continuous coordinates: boxes that only touch along an edge overlap 0.

    ALBEF's ``computeIoU`` (from the refer API) uses the inclusive-pixel form ``x + w - 1``
    and requires the overlap to be more than 1 unit thick in both directions; that equals this
    IoU except for overlaps at most 1 unit thick, which it scores 0 and which cannot reach the
    0.5 threshold unless a box is at most 2 units wide or tall."""
    ax, ay, aw, ah = _checked_box(a)
    bx, by, bw, bh = _checked_box(b)
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


def grounding_hit(predicted: Box, true: Box, threshold: float = GROUNDING_IOU) -> bool:
    """The referring-expression rule: the prediction is right when IoU >= 0.5 with the true
    box (inclusive, as in ALBEF's and UNITER's evaluation)."""
    return box_iou(predicted, true) >= threshold


def grounding_accuracy(
    predicted: Sequence[Box], true: Sequence[Box], threshold: float = GROUNDING_IOU
) -> float:
    """The fraction of referring expressions whose predicted box is a hit."""
    n = _paired("grounding_accuracy", predicted, true)
    return sum(grounding_hit(p, t, threshold) for p, t in zip(predicted, true, strict=True)) / n


# ---- Winoground-style minimal pairs ----------------------------------------------------------


ScoreMatrices = Sequence[Sequence[Sequence[float]]] | Sequence[Sequence[float]] | np.ndarray
"""[G, 2, 2] score matrices, or one [2, 2] matrix for a single group."""


@dataclass(frozen=True)
class MinimalPairScores:
    """Fractions of groups passing each Winoground test."""

    text: float
    image: float
    group: float


def _score_matrices(scores: ScoreMatrices) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 2:
        s = s[None]
    if s.ndim != 3 or s.shape[1:] != (2, 2):
        raise ValueError(f"minimal pairs: expected [G, 2, 2] score matrices, found {s.shape}")
    if s.shape[0] == 0:
        raise ValueError("minimal pairs: no groups to score (empty input)")
    if not np.isfinite(s).all():
        raise ValueError("minimal pairs: scores must be finite")
    return s


def minimal_pair_passes(
    scores: ScoreMatrices,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group, whether it passes the text, image and group tests (three [G] bool arrays).

    ``scores[g][c][i]`` scores caption c against image i; (c0, i0) and (c1, i1) are the true
    pairs. Text test: for each image, its true caption scores strictly higher than the other
    caption. Image test: for each caption, its true image scores strictly higher than the other
    image. Group test: both. A tie fails, as in Winoground: a model that cannot tell the two
    apart has not shown it can. One [2, 2] matrix is read as one group."""
    s = _score_matrices(scores)
    text = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    image = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    return text, image, text & image


def minimal_pair_scores(
    scores: ScoreMatrices,
) -> MinimalPairScores:
    """Winoground's text, image and group scores: the fractions of groups passing each test
    (see ``minimal_pair_passes``); chance is 1/4, 1/4 and 1/6."""
    text, image, group = minimal_pair_passes(scores)
    return MinimalPairScores(
        text=float(text.mean()), image=float(image.mean()), group=float(group.mean())
    )
