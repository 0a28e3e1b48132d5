"""Annotation loaders on small files written here, with real image files: each good format reads
into typed records, and each kind of bad file is refused with one error that names the file,
the 0-based record index and the field."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from trainer.downstream.errors import DownstreamDataError
from trainer.downstream.formats import (
    GroundingRecord,
    NLVR2Record,
    VERecord,
    VQARecord,
    load_answer_list,
    load_nlvr2,
    load_refcoco,
    load_snli_ve,
    load_vqa,
)


def image(path: Path, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (200, 30, 40)).save(path, format=fmt)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "images"
    image(r / "train2014" / "a.jpg", "JPEG")
    image(r / "train2014" / "b.png")
    image(r / "vg" / "1.jpg", "JPEG")
    image(r / "flickr" / "123.jpg", "JPEG")
    return r


def write(tmp_path: Path, name: str, content: Any) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def refused(call: Any, name: str, record: int | None, field: str | None) -> str:
    """Run ``call``; it must raise DownstreamDataError for that file, record and field."""
    with pytest.raises(DownstreamDataError) as info:
        call()
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.file.name, err.record, err.field) == (name, record, field)
    prefix = name
    if record is not None:
        prefix += f": record {record}"
    if field is not None:
        prefix += f": field '{field}'"
    assert str(err).startswith(prefix + ": "), str(err)
    return err.reason


VQA: list[dict[str, Any]] = [
    {"question_id": 1, "question": "What colour?", "answer": ["red", "red", "dark red"],
     "image": "train2014/a.jpg", "dataset": "vqa", "question_type": "what"},
    {"question_id": "q2", "question": "Is it?", "answer": "yes", "image": "vg/1.jpg",
     "dataset": "vg"},
    {"question_id": 3, "question": "How many?", "image": "train2014/b.png"},
]


# ---- good files ------------------------------------------------------------------------------


def test_vqa_reads_typed_records(tmp_path: Path, root: Path) -> None:
    records = load_vqa(write(tmp_path, "vqa_train.json", VQA), root)
    assert records == (
        VQARecord(1, "What colour?", root / "train2014/a.jpg", ("red", "red", "dark red"),
                  "vqa"),
        VQARecord("q2", "Is it?", root / "vg/1.jpg", ("yes",), "vg"),
        VQARecord(3, "How many?", root / "train2014/b.png", None, None),
    )
    with pytest.raises(AttributeError):
        records[0].question = "changed"  # type: ignore[misc]


def test_vqa_image_roots_per_dataset(tmp_path: Path, root: Path) -> None:
    data = [VQA[0], {**VQA[1], "image": "1.jpg"}]
    file = write(tmp_path, "vqa.json", data)
    records = load_vqa(file, {"vqa": root, "vg": root / "vg"})
    assert [r.image for r in records] == [root / "train2014/a.jpg", root / "vg" / "1.jpg"]
    refused(lambda: load_vqa(write(tmp_path, "v.json", VQA[2:]), {"vqa": root}),
            "v.json", 0, "dataset")
    assert "has no image root" in refused(lambda: load_vqa(file, {"vqa": root}), "vqa.json",
                                          1, "dataset")


def test_answer_list(tmp_path: Path) -> None:
    assert load_answer_list(write(tmp_path, "answer_list.json", ["yes", "no", "2"])) == (
        "yes", "no", "2")
    assert "repeats record 0" in refused(
        lambda: load_answer_list(write(tmp_path, "al.json", ["yes", "no", "yes"])),
        "al.json", 2, None)
    refused(lambda: load_answer_list(write(tmp_path, "al.json", ["yes", 3])), "al.json", 1, None)


def test_nlvr2_reads_both_label_conventions(tmp_path: Path, root: Path) -> None:
    data = [
        {"images": ["train2014/a.jpg", "train2014/b.png"], "sentence": "Two dogs.",
         "label": "True"},
        {"images": ["train2014/b.png", "train2014/a.jpg"], "sentence": "Two dogs.",
         "label": False},
    ]
    records = load_nlvr2(write(tmp_path, "nlvr_train.json", data), root)
    assert records == (
        NLVR2Record((root / "train2014/a.jpg", root / "train2014/b.png"), "Two dogs.", True),
        NLVR2Record((root / "train2014/b.png", root / "train2014/a.jpg"), "Two dogs.", False),
    )


def test_snli_ve_with_albef_image_ids(tmp_path: Path, root: Path) -> None:
    data = [{"image": "flickr/123", "sentence": "A dog runs.", "label": "entailment"},
            {"image": "flickr/123", "sentence": "A cat sits.", "label": "contradiction"}]
    file = write(tmp_path, "ve_train.json", data)
    records = load_snli_ve(file, root, image_suffix=".jpg")
    assert records == (
        VERecord(root / "flickr/123.jpg", "A dog runs.", "entailment"),
        VERecord(root / "flickr/123.jpg", "A cat sits.", "contradiction"),
    )
    assert "not found" in refused(lambda: load_snli_ve(file, root), "ve_train.json", 0, "image")


def test_refcoco(tmp_path: Path, root: Path) -> None:
    data = [{"image": "train2014/a.jpg", "text": "left dog", "box": [1, 2, 3.5, 4],
             "ref_id": 7},
            {"image": "train2014/a.jpg", "text": "right dog", "box": [0, 0, 8, 6]}]
    records = load_refcoco(write(tmp_path, "refcoco+_val.json", data), root)
    assert records == (
        GroundingRecord(root / "train2014/a.jpg", "left dog", (1.0, 2.0, 3.5, 4.0), 7),
        GroundingRecord(root / "train2014/a.jpg", "right dog", (0.0, 0.0, 8.0, 6.0), None),
    )


# ---- bad files -------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "reason"), [
    ("{not json", "not valid JSON (line 1 column 2"),
    ('{"question_id": 1}', "expected a JSON list of records, found an object"),
    ("[]", "contains no records"),
])
def test_malformed_files(tmp_path: Path, root: Path, content: str, reason: str) -> None:
    file = write(tmp_path, "vqa_train.json", content)
    assert refused(lambda: load_vqa(file, root), "vqa_train.json", None, None).startswith(reason)


def test_missing_file_and_size_limit(tmp_path: Path, root: Path) -> None:
    assert refused(lambda: load_vqa(tmp_path / "absent.json", root), "absent.json", None,
                   None) == "no such file"
    file = write(tmp_path, "vqa_train.json", VQA)
    size = file.stat().st_size
    reason = refused(lambda: load_vqa(file, root, max_bytes=size - 1), "vqa_train.json", None,
                     None)
    assert reason == f"{size} bytes, over the limit of {size - 1} bytes"
    assert len(load_vqa(file, root, max_bytes=size)) == 3
    refused(lambda: load_vqa(file, tmp_path / "no_such_root"), "vqa_train.json", None, None)


def test_record_that_is_not_an_object(tmp_path: Path, root: Path) -> None:
    file = write(tmp_path, "vqa_train.json", [VQA[0], ["q", "a"]])
    assert "expected a JSON object" in refused(lambda: load_vqa(file, root), "vqa_train.json",
                                               1, None)


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"question": None}, "question", "expected a string, found null"),
    ({"question": " "}, "question", "expected a non-empty string"),
    ({"question_id": True}, "question_id", "expected an integer or a string"),
    ({"question_id": 1}, "question_id", "1 repeats the id of record 0"),
    ({"answer": "yes"}, "answer", "expected a list of strings, found a string"),
    ({"answer": []}, "answer", "expected a non-empty list of strings"),
    ({"answer": ["yes", 2]}, "answer[1]", "expected a string, found a number (2)"),
    ({"image": 5}, "image", "expected an image path (a string), found a number"),
    ({"image": "train2014/none.jpg"}, "image", "image file 'train2014/none.jpg' not found"),
])
def test_vqa_bad_fields(tmp_path: Path, root: Path, change: dict[str, Any], field: str,
                        reason: str) -> None:
    second = {**VQA[0], "question_id": 2, "dataset": "vqa", **change}
    file = write(tmp_path, "vqa_train.json", [VQA[0], second])
    assert refused(lambda: load_vqa(file, root), "vqa_train.json", 1, field).startswith(reason)


def test_missing_field_and_required_answers(tmp_path: Path, root: Path) -> None:
    no_question = {k: v for k, v in VQA[0].items() if k != "question"}
    file = write(tmp_path, "vqa_train.json", [no_question])
    assert refused(lambda: load_vqa(file, root), "vqa_train.json", 0, "question") == "missing"
    test_split = write(tmp_path, "vqa_test.json", VQA[2:])
    assert load_vqa(test_split, root)[0].answers is None
    assert refused(lambda: load_vqa(test_split, root, require_answers=True), "vqa_test.json",
                   0, "answer").startswith("missing")


@pytest.mark.parametrize(("path", "reason"), [
    ("../outside.png", "escapes the image root through '..'"),
    ("train2014/../../outside.png", "escapes the image root through '..'"),
    ("/etc/passwd", "is absolute"),
    ("", "expected a non-empty image path"),
])
def test_image_paths_confined_to_the_root(tmp_path: Path, root: Path, path: str,
                                          reason: str) -> None:
    image(tmp_path / "outside.png")
    file = write(tmp_path, "vqa_train.json", [VQA[0], {**VQA[2], "image": path}])
    assert reason in refused(lambda: load_vqa(file, root), "vqa_train.json", 1, "image")


def test_dotdot_that_stays_inside_is_accepted(tmp_path: Path, root: Path) -> None:
    file = write(tmp_path, "vqa.json", [{**VQA[2], "image": "vg/../train2014/b.png"}])
    assert load_vqa(file, root)[0].image == root / "train2014/b.png"


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_symlinks_out_of_the_root_are_refused(tmp_path: Path, root: Path) -> None:
    outside = image(tmp_path / "elsewhere" / "x.png")
    (root / "link.png").symlink_to(outside)
    (root / "linked_dir").symlink_to(outside.parent, target_is_directory=True)
    (root / "inner.png").symlink_to(root / "train2014" / "b.png")  # stays inside: fine
    for rel in ("link.png", "linked_dir/x.png"):
        file = write(tmp_path, "vqa.json", [{**VQA[2], "image": rel}])
        assert "resolves outside the image root" in refused(
            lambda file=file: load_vqa(file, root), "vqa.json", 0, "image")
    file = write(tmp_path, "vqa.json", [{**VQA[2], "image": "inner.png"}])
    assert load_vqa(file, root)[0].image == root / "inner.png"


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"label": "yes"}, "label", "expected true/false or \"True\"/\"False\", found 'yes'"),
    ({"label": 1}, "label", "expected true/false or \"True\"/\"False\", found a number"),
    ({"images": ["train2014/a.jpg"]}, "images", "expected a list of 2 image paths, found 1"),
    ({"images": ["train2014/a.jpg", "gone.png"]}, "images[1]", "image file 'gone.png' not"),
    ({"sentence": 3}, "sentence", "expected a string"),
])
def test_nlvr2_bad_fields(tmp_path: Path, root: Path, change: dict[str, Any], field: str,
                          reason: str) -> None:
    good = {"images": ["train2014/a.jpg", "train2014/b.png"], "sentence": "s", "label": True}
    file = write(tmp_path, "nlvr_dev.json", [good, good, {**good, **change}])
    assert refused(lambda: load_nlvr2(file, root), "nlvr_dev.json", 2, field).startswith(reason)


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"label": "entails"}, "label", "expected one of entailment, neutral, contradiction"),
    ({"label": 0}, "label", "expected one of"),
    ({"sentence": ""}, "sentence", "expected a non-empty string"),
    ({"image": "flickr/999"}, "image", "image file 'flickr/999.jpg' not found"),
])
def test_snli_ve_bad_fields(tmp_path: Path, root: Path, change: dict[str, Any], field: str,
                            reason: str) -> None:
    good = {"image": "flickr/123", "sentence": "A dog.", "label": "neutral"}
    file = write(tmp_path, "ve_test.json", [good, {**good, **change}])
    assert refused(lambda: load_snli_ve(file, root, image_suffix=".jpg"), "ve_test.json", 1,
                   field).startswith(reason)


@pytest.mark.parametrize(("box", "field", "reason"), [
    ([0, 0, 0, 5], "box", "width must be positive, found 0"),
    ([0, 0, 5, -2], "box", "height must be positive, found -2"),
    ([0, 0, 5], "box", "expected a list of 4 numbers, found 3 item(s)"),
    ("0 0 5 5", "box", "expected a list of 4 numbers, found a string"),
    ([0, "0", 5, 5], "box[1]", "expected a number, found a string"),
    ([0, 0, True, 5], "box[2]", "expected a number, found a boolean"),
    ([0, 0, 5, float("inf")], "box[3]", "expected a finite number"),
])
def test_refcoco_bad_boxes(tmp_path: Path, root: Path, box: Any, field: str,
                           reason: str) -> None:
    good = {"image": "train2014/a.jpg", "text": "the dog", "box": [0, 0, 5, 5]}
    file = write(tmp_path, "refcoco+_testA.json", [good, good, good, {**good, "box": box}])
    assert refused(lambda: load_refcoco(file, root), "refcoco+_testA.json", 3,
                   field).startswith(reason)


def test_refcoco_missing_image_and_text(tmp_path: Path, root: Path) -> None:
    good = {"image": "train2014/a.jpg", "text": "the dog", "box": [0, 0, 5, 5]}
    file = write(tmp_path, "refcoco+.json", [{**good, "image": "train2014/c.jpg"}])
    assert "not found" in refused(lambda: load_refcoco(file, root), "refcoco+.json", 0, "image")
    file = write(tmp_path, "refcoco+.json", [good, {"image": good["image"], "box": good["box"]}])
    assert refused(lambda: load_refcoco(file, root), "refcoco+.json", 1, "text") == "missing"
