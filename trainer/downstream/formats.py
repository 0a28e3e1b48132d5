"""The downstream annotation files ALBEF and LAVIS read, as typed, frozen records.

Each loader reads one JSON list (bounded by ``max_bytes``), checks every record (fields, types,
labels, boxes) and every image file (relative, confined to the image root, present) before it
returns, so a bad file stops a run at load with one DownstreamDataError naming the file, the
record's 0-based index and the field. Keys a loader does not know are ignored (the files
carry extras such as ``question_type``). Image paths come back as ``root / relative`` (the
path as written, normalised; links under the root are not replaced by their targets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from trainer.downstream.errors import DownstreamDataError
from trainer.downstream.metrics import VE_LABELS
from trainer.downstream.reading import (
    DEFAULT_MAX_BYTES,
    Fields,
    ImageRoot,
    describe,
    read_records,
)

NLVR2_LABELS: Mapping[object, bool] = {"True": True, "False": False}
"""ALBEF's nlvr_*.json writes the label as the string "True" / "False"; JSON booleans are
accepted too. Nothing else is (not 0/1, not "true"), so a file in another convention fails
at load instead of being read as all-False."""


@dataclass(frozen=True)
class VQARecord:
    question_id: int | str
    question: str
    image: Path
    answers: tuple[str, ...] | None
    """The human answers, repeats kept (their counts weigh the soft targets); None where the
    file has none (test splits)."""
    dataset: str | None
    """ALBEF's "vqa" or "vg" when the file says; it picks the image root when roots are given
    per dataset."""


@dataclass(frozen=True)
class NLVR2Record:
    images: tuple[Path, Path]
    sentence: str
    label: bool
    """Whether the sentence is true of the image pair."""


@dataclass(frozen=True)
class VERecord:
    image: Path
    sentence: str
    label: str
    """One of ``metrics.VE_LABELS``."""


@dataclass(frozen=True)
class GroundingRecord:
    image: Path
    text: str
    box: tuple[float, float, float, float]
    """The referred object, COCO format ``[x, y, w, h]``, width and height positive."""
    ref_id: int | str | None


def _records_under(file: str | Path, image_root: str | Path, max_bytes: int
                   ) -> tuple[Path, list[object], ImageRoot]:
    """The file's records and the image root they resolve under (checked to exist)."""
    path, raw = _records(file, max_bytes)
    root = ImageRoot(image_root)
    root.require(path)
    return path, raw, root


def _records(file: str | Path, max_bytes: int) -> tuple[Path, list[object]]:
    path = Path(file)
    return path, read_records(path, max_bytes)


def _roots(
    path: Path, image_root: str | Path | Mapping[str, str | Path]
) -> ImageRoot | dict[str, ImageRoot]:
    if isinstance(image_root, Mapping):
        if not image_root:
            raise DownstreamDataError(path, None, None, "no image roots given")
        roots = {name: ImageRoot(root) for name, root in image_root.items()}
        for root in roots.values():
            root.require(path)
        return roots
    single = ImageRoot(image_root)
    single.require(path)
    return single


def load_vqa(
    file: str | Path,
    image_root: str | Path | Mapping[str, str | Path],
    *,
    require_answers: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[VQARecord, ...]:
    """A VQA file: ``[{"question_id", "question", "image", "answer"?, "dataset"?}, ...]``.

    ``answer`` is a non-empty list of strings; it may be absent or null (test splits) unless
    ``require_answers``. A record with ``"dataset": "vg"`` may give it as one string, as
    ALBEF's vg_qa.json does. ``image_root`` is one folder, or one per dataset name (ALBEF's
    vqa_root and vg_root: ``{"vqa": ..., "vg": ...}``), in which case every record needs a
    ``dataset`` naming one of them. Question ids must be unique within the file.
    """
    path, raw = _records(file, max_bytes)
    roots = _roots(path, image_root)
    out: list[VQARecord] = []
    seen: dict[int | str, int] = {}
    for index, item in enumerate(raw):
        f = Fields.of(path, index, item)
        qid = f.identifier("question_id")
        if qid in seen:
            raise f.fail("question_id", f"{qid!r} repeats the id of record {seen[qid]}")
        seen[qid] = index
        dataset = f.optional_text("dataset")
        if isinstance(roots, dict):
            if dataset is None:
                raise f.fail("dataset", "missing (the image roots are given per dataset)")
            if dataset not in roots:
                raise f.fail("dataset", f"{dataset!r} has no image root; the roots are for "
                                        f"{sorted(roots)}")
            root = roots[dataset]
        else:
            root = roots
        answers: tuple[str, ...] | None = None
        if f.raw.get("answer") is not None:
            value = f.raw["answer"]
            answers = (value,) if dataset == "vg" and isinstance(value, str) else f.strings(
                "answer")
        elif require_answers:
            raise f.fail("answer", "missing (this split needs the human answers)")
        out.append(VQARecord(
            question_id=qid,
            question=f.text("question"),
            image=f.image("image", f.get("image"), root),
            answers=answers,
            dataset=dataset,
        ))
    return tuple(out)


def load_answer_list(file: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, ...]:
    """The candidate answers of VQA as classification (ALBEF's answer_list.json): a list of
    distinct, non-empty strings; an answer's position is its class index."""
    path, raw = _records(file, max_bytes)
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        if not isinstance(item, str) or not item.strip():
            found = "a blank string" if isinstance(item, str) else describe(item)
            raise DownstreamDataError(
                path, index, None, f"expected a non-empty answer string, found {found}"
            )
        if item in seen:
            raise DownstreamDataError(
                path, index, None, f"answer {item!r} repeats record {seen[item]}"
            )
        seen[item] = index
    return tuple(seen)


def load_nlvr2(
    file: str | Path, image_root: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[NLVR2Record, ...]:
    """An NLVR2 file (ALBEF's nlvr_*.json): ``[{"images": [left, right], "sentence", "label"},
    ...]`` with the label true/false or "True"/"False"."""
    path, raw, root = _records_under(file, image_root, max_bytes)
    out: list[NLVR2Record] = []
    for index, item in enumerate(raw):
        f = Fields.of(path, index, item)
        images = f.get("images")
        if not isinstance(images, list) or len(images) != 2:
            found = f"{len(images)} item(s)" if isinstance(images, list) else describe(images)
            raise f.fail("images", f"expected a list of 2 image paths, found {found}")
        left = f.image("images[0]", images[0], root)
        right = f.image("images[1]", images[1], root)
        sentence = f.text("sentence")
        label = f.get("label")
        if isinstance(label, bool):
            truth = label
        elif isinstance(label, str) and label in NLVR2_LABELS:
            truth = NLVR2_LABELS[label]
        else:
            shown = repr(label) if isinstance(label, str) else describe(label)
            raise f.fail("label", f'expected true/false or "True"/"False", found {shown}')
        out.append(NLVR2Record(images=(left, right), sentence=sentence, label=truth))
    return tuple(out)


def load_snli_ve(
    file: str | Path,
    image_root: str | Path,
    *,
    image_suffix: str = "",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[VERecord, ...]:
    """An SNLI-VE file: ``[{"image", "sentence", "label"}, ...]``, the label one of entailment,
    neutral, contradiction. ALBEF's ve_*.json names each Flickr30k image without its
    extension (it opens ``image + ".jpg"``): pass ``image_suffix=".jpg"`` for those."""
    path, raw, root = _records_under(file, image_root, max_bytes)
    out: list[VERecord] = []
    for index, item in enumerate(raw):
        f = Fields.of(path, index, item)
        image = f.image("image", f.get("image"), root, image_suffix)
        sentence = f.text("sentence")
        label = f.get("label")
        if label not in VE_LABELS:
            shown = repr(label) if isinstance(label, str) else describe(label)
            raise f.fail("label", f"expected one of {', '.join(VE_LABELS)}, found {shown}")
        out.append(VERecord(image=image, sentence=sentence, label=label))
    return tuple(out)


def load_refcoco(
    file: str | Path, image_root: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[GroundingRecord, ...]:
    """A referring-expression file (RefCOCO, RefCOCO+, RefCOCOg): one record per expression,
    ``[{"image", "text", "box": [x, y, w, h], "ref_id"?}, ...]``, the box in COCO format with
    positive width and height."""
    path, raw, root = _records_under(file, image_root, max_bytes)
    out: list[GroundingRecord] = []
    for index, item in enumerate(raw):
        f = Fields.of(path, index, item)
        image = f.image("image", f.get("image"), root)
        text = f.text("text")
        x, y, w, h = f.numbers("box", 4)
        if w <= 0:
            raise f.fail("box", f"width must be positive, found {w:g}")
        if h <= 0:
            raise f.fail("box", f"height must be positive, found {h:g}")
        out.append(GroundingRecord(
            image=image, text=text, box=(x, y, w, h), ref_id=f.optional_identifier("ref_id")
        ))
    return tuple(out)
