"""The data package: the `shapes` benchmark, the tokenizer, and the real-data loaders."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.config import DataConfig
from trainer.data import (
    COLOURS,
    SHAPES,
    SPECIAL_TOKENS,
    Benchmark,
    labels_from_histograms,
    load_benchmark,
    load_tokenizer,
    patch_histograms,
    patch_labels,
    train_tokenizer,
)
from trainer.data.captions import SHAPE_WORDS, evaluate, parse
from trainer.data.shapes import cache_path, generate_split, load_shapes
from trainer.data.tokenizer import learn_vocab, word_counts

SMALL = {"num_train_images": 400, "num_val_images": 60, "num_test_images": 120}


def cfg(tmp: Path | None = None, **kw: object) -> DataConfig:
    return DataConfig(**({"root": str(tmp)} if tmp else {}), **{**SMALL, **kw})


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Benchmark:
    root = tmp_path_factory.mktemp("shapes")
    return load_benchmark(cfg(root, caption_noise=0.2, vocab_size=400, num_train_images=800))


# ---- shapes: determinism and split independence -------------------------------------------

def test_same_seed_same_benchmark_other_seed_differs() -> None:
    a, b = generate_split(cfg(), "test"), generate_split(cfg(), "test")
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    c = generate_split(cfg(benchmark_seed=1), "test")
    assert not np.array_equal(a.images, c.images) and a.captions != c.captions


def test_test_split_independent_of_train_size_and_prefix_stable() -> None:
    small = generate_split(cfg(num_train_images=50), "test")
    large = generate_split(cfg(num_train_images=500, caption_noise=0.3), "test")
    assert np.array_equal(small.images, large.images) and small.captions == large.captions
    assert not large.noisy.any()
    shorter = generate_split(cfg(num_test_images=60), "test")
    assert np.array_equal(shorter.images, small.images[:60])
    assert shorter.scenes == small.scenes[:60]
    k = 5 * 58  # the last family may lose its partner, which can change its captions
    assert shorter.captions[:k] == small.captions[:k]


def test_splits_shapes_and_types(bench: Benchmark) -> None:
    for split, n in (("train", 800), ("val", 60), ("test", 120)):
        s = bench.split(split)
        assert s.num_images == n and len(s.captions) == 5 * n
        assert s.caption_image.dtype == torch.long and s.noisy.dtype == torch.bool
        assert torch.equal(torch.bincount(s.caption_image, minlength=n), torch.full((n,), 5))
        assert s.label_maps is not None and s.label_maps.shape == (n, 2, 32, 32)
        assert s.label_maps.dtype == torch.uint8
        assert s.image_group is not None and s.scenes is not None and len(s.scenes) == n
    x = bench.train.load_images(bench.train.caption_image[:16])
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.1
    assert not bench.val.noisy.any() and not bench.test.noisy.any()
    assert all(1 <= len(s) <= 3 for s in bench.train.scenes or [])


def test_generation_is_fast_and_cached(tmp_path: Path) -> None:
    import time

    c = DataConfig(root=str(tmp_path))  # the tiny preset's sizes: 2000 / 100 / 200 at 32 px
    start = time.perf_counter()
    first = load_shapes(c)
    assert time.perf_counter() - start < 5.0
    path = cache_path(c)
    assert path.is_file() and not list(tmp_path.glob("*.tmp"))
    stamp = path.stat().st_mtime_ns
    again = load_shapes(c)
    assert path.stat().st_mtime_ns == stamp  # read, not rewritten
    assert again["test"].captions == first["test"].captions
    assert torch.equal(again["train"].label_maps, first["train"].label_maps)
    assert again["train"].scenes == first["train"].scenes
    path.write_bytes(b"not a zip")  # a corrupt cache is regenerated
    assert load_shapes(c)["val"].captions == first["val"].captions
    assert cache_path(DataConfig(root=str(tmp_path), benchmark_seed=3)) != path


# ---- shapes: captions are true, noise is false and flagged --------------------------------

_SHAPE_OF = {w: s for s, ws in SHAPE_WORDS.items() for w in ws}


def test_clean_captions_true_of_their_images(bench: Benchmark) -> None:
    for split in (bench.train, bench.val, bench.test):
        assert split.scenes is not None
        for text, img, noisy in zip(split.captions, split.caption_image.tolist(),
                                    split.noisy.tolist(), strict=True):
            if noisy:
                continue
            scene = split.scenes[img]
            # Word level, independent of the grammar: every colour / shape named is present.
            words = set(re.findall(r"[a-z]+", text))
            colours = {COLOURS[o.colour] for o in scene}
            shapes = {SHAPES[o.shape] for o in scene}
            assert words & set(COLOURS) <= colours, text
            named = {_SHAPE_OF[w] for w in _SHAPE_OF if re.search(rf"\b{w}\b", text)}
            assert named <= shapes, text
            assert evaluate(parse(text), scene) == 1, text


def test_caption_noise_fraction_flagged_and_false(bench: Benchmark) -> None:
    s = bench.train
    assert s.scenes is not None
    assert abs(s.noisy.float().mean().item() - 0.2) < 0.01
    swapped = partial = 0
    clean = {t for t, n in zip(s.captions, s.noisy.tolist(), strict=True) if not n}
    for c in torch.nonzero(s.noisy).flatten().tolist():
        text = s.captions[c]
        assert evaluate(parse(text), s.scenes[int(s.caption_image[c])]) == -1, text
        swapped += text in clean
        partial += text not in clean
    assert swapped > 50 and partial > 50  # both kinds of corruption occur


def test_paraphrases_vary(bench: Benchmark) -> None:
    caps = bench.test.captions
    assert len(set(caps)) > 0.9 * len(caps)
    kinds = Counter(parse(c).kind for c in caps)
    assert set(kinds) == {"single", "and", "count", "rel"} and min(kinds.values()) > 20
    per_image = [caps[i : i + 5] for i in range(0, len(caps), 5)]
    assert np.mean([len(set(p)) for p in per_image]) > 4.5


# ---- shapes: geometry ----------------------------------------------------------------------

def test_relations_agree_with_rendered_pixels(bench: Benchmark) -> None:
    s = bench.test
    assert s.scenes is not None and s.label_maps is not None
    checked = 0
    for text, img in zip(s.captions, s.caption_image.tolist(), strict=True):
        form = parse(text)
        if form.kind != "rel":
            continue
        maps = s.label_maps[img].long()
        centres = []
        for np_ in form.nps:
            hits = [o for o in s.scenes[img] if np_.matches(o)]
            if len(hits) != 1 or sum(p.key[:2] == hits[0].key[:2] for p in s.scenes[img]) > 1:
                break  # pixels can only locate an object with a unique (shape, colour)
            o = hits[0]
            ys, xs = torch.nonzero((maps[0] == o.shape + 1) & (maps[1] == o.colour + 1),
                                   as_tuple=True)
            if len(xs) == 0:
                break
            centres.append((xs.float().mean().item() + 0.5, ys.float().mean().item() + 0.5))
        if len(centres) != 2:
            continue
        (ax, ay), (bx, by) = centres
        sign = {"left": bx - ax, "right": ax - bx, "above": by - ay, "below": ay - by}
        assert sign[form.rel] > 0, (text, centres)
        checked += 1
    assert checked > 50


def test_scene_positions_match_label_maps(bench: Benchmark) -> None:
    s = bench.val
    assert s.scenes is not None and s.label_maps is not None
    for scene, maps in zip(s.scenes, s.label_maps.long(), strict=True):
        for o in scene:
            ys, xs = torch.nonzero((maps[0] == o.shape + 1) & (maps[1] == o.colour + 1),
                                   as_tuple=True)
            assert len(xs) > 10
            if sum(p.key[:2] == o.key[:2] for p in scene) == 1:
                assert abs((xs.float().mean().item() + 0.5) / 32 - o.x) < 0.06
                assert abs((ys.float().mean().item() + 0.5) / 32 - o.y) < 0.06


def test_patch_labels_majority() -> None:
    maps = torch.zeros(1, 2, 4, 4, dtype=torch.uint8)
    maps[0, 0, :2, :2] = torch.tensor([[3, 3], [3, 0]], dtype=torch.uint8)  # patch 0: 3
    maps[0, 0, 0, 2] = 5  # patch 1: one pixel of 5, background majority
    maps[0, 1, 2:, 2:] = 7  # patch 3 of channel 1
    out = patch_labels(maps, 2)
    assert out.shape == (1, 2, 4) and out.dtype == torch.long
    assert out[0, 0].tolist() == [3, 0, 0, 0] and out[0, 1].tolist() == [0, 0, 0, 7]
    assert patch_labels(maps, 2, min_foreground=0.25)[0, 0].tolist() == [3, 5, 0, 0]
    with pytest.raises(ValueError):
        patch_labels(maps, 3)


def test_patch_histograms_are_pixel_shares() -> None:
    maps = torch.zeros(1, 2, 4, 4, dtype=torch.uint8)
    maps[0, 0, :2, :2] = torch.tensor([[3, 3], [3, 0]], dtype=torch.uint8)
    maps[0, 0, 0, 2] = 5
    hist = patch_histograms(maps, 2)
    assert hist.shape == (1, 2, 4, 6) and hist.dtype == torch.float32
    assert torch.allclose(hist.sum(-1), torch.ones(1, 2, 4))
    assert hist[0, 0, 0].tolist() == [0.25, 0, 0, 0.75, 0, 0]
    assert hist[0, 0, 1].tolist() == [0.75, 0, 0, 0, 0, 0.25]
    assert hist[0, 1, 2].tolist() == [1.0, 0, 0, 0, 0, 0]
    assert patch_histograms(maps, 2, num_classes=9).shape[-1] == 9
    with pytest.raises(ValueError, match="num_classes"):
        patch_histograms(maps, 2, num_classes=4)
    assert torch.equal(labels_from_histograms(hist, 0.25), patch_labels(maps, 2, 0.25))


def test_patch_labels_on_shapes(bench: Benchmark) -> None:
    assert bench.test.label_maps is not None
    out = patch_labels(bench.test.label_maps, 8)
    assert out.shape == (120, 2, 16)
    assert ((out[:, 0] > 0) == (out[:, 1] > 0)).all()
    assert out[:, 0].max() <= len(SHAPES) and out[:, 1].max() <= len(COLOURS)


# ---- shapes: compositional difficulty ------------------------------------------------------

def test_minimal_pairs_are_hard_negatives(bench: Benchmark) -> None:
    s = bench.test
    assert s.scenes is not None and s.image_group is not None
    groups = Counter(s.image_group.tolist())
    paired = [i for i, g in enumerate(s.image_group.tolist()) if groups[g] == 2]
    assert len(paired) > 0.3 * s.num_images
    distinct = total = binding = 0
    for i in paired:
        j = next(k for k in paired if k != i and s.image_group[k] == s.image_group[i])
        a, b = s.scenes[i], s.scenes[j]
        assert a != b and len(a) == len(b)
        same_bag = (sorted(o.colour for o in a) == sorted(o.colour for o in b)
                    and sorted(o.shape for o in a) == sorted(o.shape for o in b))
        binding += same_bag and sorted(o.key for o in a) != sorted(o.key for o in b)
        for c in (s.image_captions()[i]):
            total += 1
            distinct += evaluate(parse(s.captions[c]), b) == -1
    assert distinct / total > 0.97  # captions tell a pair apart...
    assert binding > 0.1 * len(paired)  # ...often only through attribute binding


def test_attribute_sets_shared_across_images(bench: Benchmark) -> None:
    s = bench.test
    assert s.scenes is not None
    colour_bags = Counter(tuple(sorted(o.colour for o in sc)) for sc in s.scenes)
    shared = sum(colour_bags[tuple(sorted(o.colour for o in sc))] > 1 for sc in s.scenes)
    assert shared > 0.5 * s.num_images
    # but a bag of attributes does not identify the image: same (colour, shape) objects with
    # another binding or arrangement exist for many images
    objects = Counter(frozenset((o.colour, o.shape) for o in sc) for sc in s.scenes)
    assert sum(v for v in objects.values() if v > 1) > 0.2 * s.num_images


# ---- tokenizer -----------------------------------------------------------------------------

def test_tokenizer_special_ids_padding_truncation(bench: Benchmark) -> None:
    tok = bench.tokenizer
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
            tok.mask_token_id) == (0, 1, 2, 3, 4)
    long = " and ".join(["a red circle"] * 20)
    ids, mask = bench.tokenize(["a red circle", long])
    assert ids.shape == mask.shape == (2, 30) and ids.dtype == mask.dtype == torch.long
    n = int(mask[0].sum())
    assert ids[0, 0] == 2 and ids[0, n - 1] == 3 and (ids[0, n:] == 0).all()
    assert (mask[0, :n] == 1).all() and (mask[0, n:] == 0).all()
    assert mask[1].all() and ids[1, 0] == 2 and ids[1, -1] == 3
    empty_ids, empty_mask = bench.tokenize([])
    assert empty_ids.shape == (0, 30)
    all_ids, _ = bench.tokenize(bench.test.captions)
    assert (all_ids != 1).all()  # no [UNK] on the benchmark's own grammar


def test_tokenizer_round_trip(bench: Benchmark) -> None:
    tok = bench.tokenizer
    for text in bench.test.captions[:200]:
        ids = tok(text)["input_ids"]
        back = tok.decode(ids, skip_special_tokens=True)
        assert re.sub(r"\s+([,:])", r"\1", back) == text


def test_tokenizer_deterministic_and_cached(tmp_path: Path, bench: Benchmark) -> None:
    caps = bench.train.captions
    shuffled = list(caps)
    random.Random(0).shuffle(shuffled)
    vocab = learn_vocab(word_counts(caps), 300)
    assert vocab == learn_vocab(word_counts(shuffled), 300)  # no hash-order or input-order ties
    assert len(vocab) <= 300 and vocab[:5] == list(SPECIAL_TOKENS)
    first = train_tokenizer(caps, 300, tmp_path)
    files = list(tmp_path.glob("tokenizer-*.json"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    second = train_tokenizer(caps, 300, tmp_path)
    assert files[0].stat().st_mtime_ns == stamp and second.get_vocab() == first.get_vocab()
    train_tokenizer(caps, 250, tmp_path)
    assert len(list(tmp_path.glob("tokenizer-*.json"))) == 2


def test_tokenizer_path_file_and_folder(tmp_path: Path, bench: Benchmark) -> None:
    file = tmp_path / "tok.json"
    bench.tokenizer.backend_tokenizer.save(str(file))
    folder = tmp_path / "hf"
    bench.tokenizer.save_pretrained(str(folder))
    text = bench.test.captions[0]
    for path in (file, folder):
        tok = load_tokenizer(str(path))
        assert tok(text)["input_ids"] == bench.tokenizer(text)["input_ids"]
        assert tok.mask_token_id == 4 and tok.pad_token_id == 0
    c = cfg(tmp_path / "cache", tokenizer_path=str(file), num_train_images=20)
    assert load_benchmark(c).tokenizer.get_vocab() == bench.tokenizer.get_vocab()
    with pytest.raises(ValueError, match="data.tokenizer_path"):
        load_tokenizer(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="data.tokenizer_path"):
        load_tokenizer(str(tmp_path / "bad.json"))


# ---- real data -----------------------------------------------------------------------------

def _image(path: Path, colour: tuple[int, int, int], size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB" if path.suffix == ".jpg" else "RGBA", size, colour).save(path)


def _karpathy(root: Path, with_filepath: bool) -> Path:
    entries = []
    splits = ["train", "train", "restval", "val", "test", "test"]
    for k, split in enumerate(splits):
        folder = "imgs" if with_filepath else ""
        name = f"im{k}.jpg" if k % 2 == 0 else f"im{k}.png"
        _image(root / folder / name, (40 * k, 255 - 40 * k, 128), (20 + 5 * k, 30))
        sentences = [{"raw": f"picture number {k} caption {j}"} for j in range(k % 3 + 1)]
        entry = {"filename": name, "split": split, "sentences": sentences}
        if with_filepath:
            entry["filepath"] = folder
        entries.append(entry)
    ann = root / "karpathy.json"
    ann.write_text(json.dumps({"images": entries}))
    return ann


@pytest.mark.parametrize("dataset", ["coco", "flickr30k"])
def test_karpathy_fixture(tmp_path: Path, dataset: str) -> None:
    _karpathy(tmp_path, with_filepath=dataset == "coco")
    c = DataConfig(dataset=dataset, root=str(tmp_path), annotations="karpathy.json",
                   image_size=24, vocab_size=60)
    b = load_benchmark(c)
    assert (b.train.num_images, b.val.num_images, b.test.num_images) == (3, 1, 2)
    assert len(b.train.captions) == 1 + 2 + 3  # k % 3 + 1 captions for k = 0, 1, 2
    assert b.train.caption_image.tolist() == [0, 1, 1, 2, 2, 2]
    assert b.test.captions == ["picture number 4 caption 0", "picture number 4 caption 1",
                               "picture number 5 caption 0", "picture number 5 caption 1",
                               "picture number 5 caption 2"]
    assert b.train.label_maps is None and b.train.scenes is None
    x = b.test.load_images(b.test.caption_image)
    assert x.shape == (5, 3, 24, 24) and x.dtype == torch.float32
    assert torch.allclose(x[0], x[1]) and not torch.allclose(x[0], x[2])
    expected = torch.tensor([160, 95, 128]) / 127.5 - 1  # image 4's colour
    assert torch.allclose(x[0].mean((1, 2)), expected, atol=0.02)
    ids, _ = b.tokenize(b.test.captions)
    assert ids.shape == (5, 30) and (ids[:, 0] == 2).all()
    capped = load_benchmark(c.model_copy(update={"num_train_images": 1, "caption_noise": 0.5}))
    assert capped.train.num_images == 1 and capped.train.captions[0].startswith("picture number 0")
    assert not capped.train.noisy.any()  # one image: nothing to swap with
    noisy = load_benchmark(c.model_copy(update={"caption_noise": 0.5})).train
    assert int(noisy.noisy.sum()) == 3
    for text, img, flag in zip(noisy.captions, noisy.caption_image.tolist(),
                               noisy.noisy.tolist(), strict=True):
        assert (f"number {[0, 1, 2][img]} " not in text) == flag


def test_imagefolder_json_and_jsonl(tmp_path: Path) -> None:
    for k in range(5):
        _image(tmp_path / "pics" / f"{k}.png", (k * 50, 0, 0), (16, 16))
    mapping = {
        "pics/0.png": ["zero a", "zero b"],
        "pics/1.png": {"captions": ["one"], "split": "val"},
        "pics/2.png": {"captions": ["two"], "split": "test"},
        "pics/3.png": {"captions": ["three"], "split": "train"},
        "pics/4.png": {"captions": ["four"], "split": "test"},
    }
    (tmp_path / "captions.json").write_text(json.dumps(mapping))
    c = DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=16, vocab_size=60)
    b = load_benchmark(c)
    from trainer.data.imagefolder import hashed_split

    train_expected = sorted(["pics/3.png"] + (["pics/0.png"]
                                              if hashed_split("pics/0.png") == "train" else []))
    assert [Path(p).relative_to(tmp_path).as_posix() for p in b.train.image_ids] == train_expected
    assert b.test.captions == ["two", "four"] and b.val.captions == ["one"]
    assert b.test.load_images(torch.tensor([0, 1])).shape == (2, 3, 16, 16)

    (tmp_path / "captions.json").unlink()
    lines = [{"image": "pics/0.png", "caption": "zero a", "split": "train"},
             {"image": "pics/0.png", "captions": ["zero b"]},
             {"image": "pics/1.png", "captions": ["one"], "split": "val"},
             {"image": "pics/2.png", "captions": ["two"], "split": "test"}]
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    b = load_benchmark(c)
    assert b.train.captions == ["zero a", "zero b"] and b.train.num_images == 1
    assert b.train.caption_image.tolist() == [0, 0]


def test_hashed_split_is_stable_and_roughly_90_5_5() -> None:
    from trainer.data.imagefolder import hashed_split

    counts = Counter(hashed_split(f"img_{k:05d}.jpg") for k in range(4000))
    assert 0.87 < counts["train"] / 4000 < 0.93 and counts["val"] > 120 and counts["test"] > 120
    assert hashed_split("a.jpg") == hashed_split("a.jpg")


def test_real_data_errors_name_the_field(tmp_path: Path) -> None:
    def fails(match: str, **kw: object) -> None:
        with pytest.raises(ValueError, match=match):
            load_benchmark(DataConfig(**kw))  # type: ignore[arg-type]

    fails("data.root", dataset="coco")
    fails("data.root", dataset="coco", root=str(tmp_path / "missing"))
    fails("data.annotations", dataset="coco", root=str(tmp_path))
    fails("data.annotations", dataset="imagefolder", root=str(tmp_path))
    _karpathy(tmp_path, with_filepath=True)
    (tmp_path / "imgs" / "im3.png").unlink()
    fails(r"data.root: 1 val image file\(s\).*im3.png", dataset="coco", root=str(tmp_path),
          annotations="karpathy.json")
    (tmp_path / "broken.json").write_text(json.dumps({"nothing": []}))
    fails("data.annotations.*'images'", dataset="coco", root=str(tmp_path),
          annotations="broken.json")
    (tmp_path / "captions.json").write_text(json.dumps({"imgs/im0.jpg": ["only train"]}))
    fails("data.root: no (val|test) images", dataset="imagefolder", root=str(tmp_path))
    (tmp_path / "captions.json").write_text(json.dumps({"x.png": {"captions": [1]}}))
    fails("data.annotations", dataset="imagefolder", root=str(tmp_path))
