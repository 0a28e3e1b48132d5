"""Are ITM's hard negatives negatives on `shapes`? A diagnostic of the albef_table1 finding.

In `albef_table1-downstream` hard negatives made every fusion task worse, the opposite of ALBEF.
The hypothesis written there: `shapes` captions are short facts, one caption is often true of
another image in the batch, so the "negative" drawn in proportion to ITC's similarity is often
a true match, and ITM learns labels that contradict the image. This bench measures that, from
the scene graphs (``trainer.data.captions.parse`` and ``evaluate``: +1 true, 0 undecidable, -1
false), on the spec's own data:

- **in the data**: in a batch of the spec's size, the share of (caption, other image) pairs in
  which the caption is true of the other image, and the share of rows that have at least one
  such candidate; the share of the positives that are false (the spec's noisy captions);
- **in the draws** (``--train``): one trial of the spec's ``+ITC+ITM_hard`` row is trained at
  a seed of this bench's own range (4000..), then negatives are drawn from its ITC similarity
  exactly as ITM draws them (``negative_weights``, ``sample_negatives``, ITC's temperature) and
  uniformly, and the share of draws that are true of their anchor is counted both ways.

Nothing here changes a recipe: it explains a result, after it was seen.

    .venv/bin/python bench/hard_negatives.py                  # the data alone (seconds)
    .venv/bin/python bench/hard_negatives.py --train          # + one trained trial (~3 min)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from trainer.config import TrainConfig, build_config  # noqa: E402
from trainer.data import load_benchmark  # noqa: E402
from trainer.data.captions import evaluate, parse  # noqa: E402
from trainer.data.types import ImageTextSplit  # noqa: E402
from trainer.objectives.itm import negative_weights, sample_negatives  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "experiments" / "albef_table1.yaml"
ROW = {"objectives.itc.enabled": True, "objectives.itm.hard_negatives": True}
"""The spec's +ITC+ITM_hard row (its base has ITC off and uniform negatives)."""


def spec_config(spec: Path, extra: dict[str, Any]) -> TrainConfig:
    base = yaml.safe_load(spec.read_text())["base"]
    return build_config(base["preset"], dotted={**base.get("set", {}), **extra})


def truth_matrix(split: ImageTextSplit, captions: np.ndarray) -> np.ndarray:
    """[B captions, B images of those captions]: the caption's truth on each row's image."""
    assert split.scenes is not None
    forms = [parse(split.captions[c]) for c in captions]
    images = split.caption_image[torch.as_tensor(captions)].tolist()
    return np.array([[evaluate(f, split.scenes[i]) for i in images] for f in forms])


def data_shares(split: ImageTextSplit, batch: int, batches: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    true_pairs = undecided = pairs = rows_with_true = rows = 0
    for _ in range(batches):
        caps = rng.choice(len(split.captions), size=batch, replace=False)
        t = truth_matrix(split, caps)
        img = split.caption_image[torch.as_tensor(caps)].numpy()
        other = img[:, None] != img[None, :]
        true_pairs += int(((t == 1) & other).sum())
        undecided += int(((t == 0) & other).sum())
        pairs += int(other.sum())
        rows_with_true += int(((t == 1) & other).any(axis=1).sum())
        rows += batch
    noisy = float(split.noisy.float().mean()) if split.noisy is not None else 0.0
    return {"candidate_true": true_pairs / pairs, "candidate_undecidable": undecided / pairs,
            "rows_with_a_true_candidate": rows_with_true / rows, "positives_noisy": noisy}


def draw_shares(cfg: TrainConfig, seed: int, batches: int, draws: int) -> dict[str, Any]:
    from trainer.loop import Trainer

    trainer = Trainer(cfg, seed, checkpoint_dir=None)
    outcome = trainer.run()
    with torch.no_grad():
        return _draws(trainer, cfg, seed, batches, draws) | {
            "mean_recall": outcome.metrics["mean_recall"], "seed": seed}


def _draws(trainer: Any, cfg: TrainConfig, seed: int, batches: int, draws: int
           ) -> dict[str, Any]:
    pre = trainer.pretrainer.eval()
    split, model = trainer.bench.train, pre.model
    itc = pre.objectives["itc"]
    temp = float(itc.temp.clamp(itc.cfg.temp_min, itc.cfg.temp_max))
    gen = torch.Generator().manual_seed(seed)
    counts = {f"{way}_{kind}": 0 for way in ("t2i", "i2t") for kind in ("hard", "uniform")}
    total = 0
    for _ in range(batches):
        caps = torch.randperm(len(split.captions), generator=gen)[: cfg.data.batch_size]
        img = split.caption_image[caps]
        ids, mask = trainer.train_ids[caps], trainer.train_mask[caps]
        text_feat = model.text_feat(model.encode_text(ids, mask), mask)
        image_feat = model.image_feat(model.encode_image(split.load_images(img)))
        sim = text_feat @ image_feat.t()  # [caption, image of each row]
        truth = torch.as_tensor(truth_matrix(split, caps.numpy()))
        positives = img[:, None] == img[None, :]
        for _ in range(draws):
            for kind, s in (("hard", sim), ("uniform", None)):
                rows, neg = sample_negatives(negative_weights(s, positives, temp), gen)
                # a text's negative image: is the text true of it?
                counts[f"t2i_{kind}"] += int((truth[rows, neg] == 1).sum())
                s_t = None if s is None else s.t()
                rows, neg = sample_negatives(negative_weights(s_t, positives.t(), temp), gen)
                # an image's negative text: is that text true of the image?
                counts[f"i2t_{kind}"] += int((truth[neg, rows] == 1).sum())
            total += len(caps)
    shares = {f"drawn_true_{k}": v / total for k, v in counts.items()}
    return {**shares, "temperature": temp}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", type=Path, default=SPEC)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--draws", type=int, default=5, help="negative draws per batch and way")
    ap.add_argument("--seed", type=int, default=4000)
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/hard_negatives.json")
    args = ap.parse_args()
    cfg = spec_config(args.spec, ROW)
    bench = load_benchmark(cfg.data)
    result: dict[str, Any] = {
        "spec": args.spec.name, "batch": cfg.data.batch_size,
        "data": data_shares(bench.train, cfg.data.batch_size, args.batches, args.seed)}
    if args.train:
        result["draws"] = draw_shares(cfg, args.seed, args.batches, args.draws)
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
