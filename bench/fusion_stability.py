"""How steadily does the fusion encoder learn? ITM (and MLM) over several seeds, side by side.

The quick budget of ``bench/stability.py`` (400 steps, 400 training images, 100 test images,
batch 64, one torch thread per trial) with ITC off, three arms:

- ``itm``: ITM alone with uniformly drawn negatives;
- ``itm_hard``: ITM alone with hard negatives (ITC off, so drawn from the online features'
  similarity, which no objective trains here: close to uniform);
- ``itm_mlm``: ITM with random negatives and MLM.

Each pair comes with one negative image and one negative text, so a head that ignores its input
can do no better than the 1:2 prior: cross-entropy H(1/3) = 0.6365. Per seed the bench prints
the step at which ``loss_itm`` leaves the prior (its mean over the last 10 logged steps first
below 0.9 H(1/3)), the final loss (mean of the last 20 logged steps), the ITM-only retrieval
(mean recall: with ITC off, ITM scores every test pair), and for arms with MLM the test
captions' MLM loss with their own image, with a blank image and with another caption's image:
a fusion that reads the image predicts masked words better with the right one.

Recipe choices are made here, on a seed range of its own (2000.. by default), never on the
reproductions' seeds.

    .venv/bin/python bench/fusion_stability.py                      # the recipe as configured
    .venv/bin/python bench/fusion_stability.py --set model.text.fusion_readout=cls --label cls
    .venv/bin/python bench/fusion_stability.py --arms itm --seeds 3
    .venv/bin/python bench/fusion_stability.py --arms itm_mlm --gradients   # who sets Adam's step

Two seeds run at a time (one thread each: the machine has two cores).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

# the project root first (bench/trainer.py would shadow the trainer package), bench/ last
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))

from stability import QUICK_BUDGET as ITC_QUICK_BUDGET  # noqa: E402

PRIOR = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
"""Cross-entropy of predicting the 1:2 positive:negative ratio and nothing else."""
LEAVE_BAR = 0.9 * PRIOR

QUICK_BUDGET: dict[str, Any] = {
    **ITC_QUICK_BUDGET,  # the same budget as bench/stability.py, with ITC off and ITM on
    "objectives.itc.enabled": False,
    "objectives.itm.enabled": True,
    "objectives.itm.hard_negatives": False,
}

ARMS: dict[str, dict[str, Any]] = {
    "itm": {},
    "itm_hard": {"objectives.itm.hard_negatives": True},
    "itm_mlm": {"objectives.mlm.enabled": True, "objectives.mlm.distill": False},
}


def smoothed(history: list[tuple[int, float]], window: int) -> list[tuple[int, float]]:
    """(step, mean of the last ``window`` values) once ``window`` values are in."""
    out = []
    for i in range(window - 1, len(history)):
        out.append((history[i][0], statistics.fmean(v for _, v in history[i - window + 1:i + 1])))
    return out


def leaves_prior(history: list[tuple[int, float]]) -> int | None:
    """First step whose 10-step mean ``loss_itm`` is below 0.9 H(1/3); None if it never is."""
    return next((step for step, value in smoothed(history, 10) if value < LEAVE_BAR), None)


def mlm_with_and_without_the_image(trainer: Any) -> dict[str, float]:
    """The test captions' MLM loss through the trained fusion, with their own image, a blank
    (all-zero: mid-grey) image and the next test image, one fixed masking."""
    import torch

    from trainer.objectives.mlm import MLM, mask_tokens, mlm_loss

    pre = trainer.pretrainer
    mlm = pre.objectives["mlm"]
    assert isinstance(mlm, MLM)
    split = trainer.bench.test
    ids, mask = trainer.bench.tokenize(split.captions)
    owner = split.caption_image
    images = split.load_images(owner)
    others = split.load_images((owner + 1) % split.num_images)
    gen = torch.Generator().manual_seed(0)
    masked, labels = mask_tokens(ids, pre.vocab, mlm.cfg, gen)
    pre.eval()
    out = {}
    with torch.no_grad():
        text = pre.model.encode_text(masked, mask)
        for name, pixels in (("own", images), ("blank", torch.zeros_like(images)),
                             ("other", others)):
            fused = pre.model.fuse(text, mask, pre.model.encode_image(pixels))
            out[f"mlm_{name}_image"] = float(mlm_loss(mlm.head(fused), labels))
    return out


def image_dependence(preset: str, dotted: dict[str, Any], seed: int, pairs: int = 16
                     ) -> dict[str, float]:
    """At step 0 (warm start loaded, fusion as initialised): how much of the fused readout's
    spread over every (caption, image) combination of ``pairs`` test pairs the image explains,
    for the [CLS] readout and the mean readout. The share is the variance over images with the
    caption held fixed, averaged, over the total variance; a head cannot tell a match from a
    mismatch through a readout the image does not move."""
    import torch

    from trainer.config import build_config
    from trainer.loop import Trainer
    from trainer.model.pooling import pool_tokens

    cfg = build_config(preset, dotted={**dotted, "schedule.steps": 1})
    trainer = Trainer(cfg, seed, checkpoint_dir=None)
    pre, split = trainer.pretrainer, trainer.bench.test
    ids, mask = trainer.bench.tokenize(split.captions[:pairs])
    pre.eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        image = pre.model.encode_image(split.load_images(split.caption_image[:pairs]))
        text = pre.model.encode_text(ids, mask)
        t = text.repeat_interleave(pairs, 0)
        m = mask.repeat_interleave(pairs, 0)
        fused = pre.model.fuse(t, m, image.repeat(pairs, 1, 1))
        for how in ("cls", "mean"):
            r = pool_tokens(fused, how, m).reshape(pairs, pairs, -1).double()  # [text, image]
            total = r.reshape(pairs * pairs, -1).var(0).sum()
            over_images = r.var(1).sum(-1).mean()
            out[f"image_share_{how}"] = float(over_images / total)
    return out


def gradient_norms(preset: str, dotted: dict[str, Any], seed: int, at_step: int = 0
                   ) -> dict[str, float]:
    """After ``at_step`` training steps, each enabled objective's gradient norm over each part
    of the model (vision encoder, text encoder, fusion), one objective's loss backpropagated at
    a time on the same batch: how much of each shared weight's Adam step each one sets."""
    import torch

    from trainer.config import build_config
    from trainer.loop import Trainer
    from trainer.model.forward import StepContext

    cfg = build_config(preset, dotted=dotted)
    trainer = Trainer(cfg, seed, checkpoint_dir=None)
    pre = trainer.pretrainer
    pre.train()
    for _ in range(at_step):
        trainer.train_step()
    batch = next(trainer.micro_batches())
    named = {n: p for n, p in pre.named_parameters() if n.startswith("model.")}
    out: dict[str, float] = {}
    for name, objective in pre.enabled().items():
        pre.zero_grad(set_to_none=True)
        ctx = StepContext(pre.model, pre.model_m, batch, alpha_ramp=1.0, step=at_step,
                          streams=pre.streams)
        ctx.objectives = dict(pre.enabled())
        objective(ctx).loss.backward()
        for part in ("vision", "text", "fusion"):
            grads = [p.grad for n, p in named.items()
                     if n.startswith(f"model.{part}.") and p.grad is not None]
            out[f"{name}:{part}"] = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
                                          ) if grads else 0.0
    return out


def run_seed(preset: str, dotted: dict[str, Any], seed: int) -> dict[str, Any]:
    from trainer.config import build_config
    from trainer.loop import Trainer

    cfg = build_config(preset, dotted=dotted)
    start = time.perf_counter()
    trainer = Trainer(cfg, seed, checkpoint_dir=None)
    out = trainer.run()
    history = out.history.get("loss_itm", [])
    row = {
        "seed": seed,
        "leaves_prior": leaves_prior(history),
        "final_loss_itm": statistics.fmean(v for _, v in history[-20:]),
        "mean_recall": out.metrics["mean_recall"],
        "seconds": time.perf_counter() - start,
    }
    if cfg.objectives.mlm.enabled:
        row.update(mlm_with_and_without_the_image(trainer))
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def spread(key: str) -> tuple[float, float]:
        values = [r[key] for r in rows]
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    out: dict[str, Any] = {"leaves_prior": [r["leaves_prior"] for r in rows],
                           "final_loss_itm": spread("final_loss_itm"),
                           "mean_recall": spread("mean_recall")}
    for key in ("mlm_own_image", "mlm_blank_image", "mlm_other_image"):
        if key in rows[0]:
            out[key] = spread(key)
    return out


def parse_sets(items: list[str]) -> dict[str, Any]:
    from trainer.config import parse_override

    return dict(parse_override(item) for item in items)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated: {', '.join(ARMS)}")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=2000)
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="extra override section.key=value (repeatable)")
    ap.add_argument("--label", default="")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the rows and summaries here")
    ap.add_argument("--probe", action="store_true",
                    help="only the image's share of the fused readouts' spread at step 0")
    ap.add_argument("--gradients", type=int, nargs="*", metavar="STEP",
                    help="only each objective's gradient norm per model part after these "
                    "training steps (default 0)")
    args = ap.parse_args(argv)
    if args.gradients is not None:
        for arm in args.arms.split(","):
            dotted = {**QUICK_BUDGET, **ARMS[arm], **parse_sets(args.sets)}
            for step in args.gradients or [0]:
                norms = gradient_norms(args.preset, dotted, args.first_seed, step)
                print(f"  {arm} seed {args.first_seed} step {step}: "
                      + "  ".join(f"{k} {v:.3f}" for k, v in norms.items()), flush=True)
        return 0
    if args.probe:
        dotted = {**QUICK_BUDGET, **parse_sets(args.sets)}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            shares = image_dependence(args.preset, dotted, seed)
            print(f"  seed {seed}: " + "  ".join(f"{k} {v:.4f}" for k, v in shares.items()),
                  flush=True)
        return 0

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    label = args.label or " ".join(args.sets) or "as configured"
    print(f"fusion stability [{label}] preset={args.preset} seeds={seeds[0]}..{seeds[-1]} "
          f"prior H(1/3)={PRIOR:.4f}, leaves it below {LEAVE_BAR:.4f}", flush=True)
    report: dict[str, Any] = {"label": label, "sets": args.sets, "arms": {}}
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for arm in args.arms.split(","):
            dotted = {**QUICK_BUDGET, **ARMS[arm], **parse_sets(args.sets)}
            rows = list(pool.map(run_seed, [args.preset] * len(seeds),
                                 [dotted] * len(seeds), seeds))
            s = summarise(rows)
            print(f" {arm}:", flush=True)
            for r in rows:
                mlm = "".join(f"  {k[4:]} {r[k]:.3f}" for k in
                              ("mlm_own_image", "mlm_blank_image", "mlm_other_image") if k in r)
                print(f"  seed {r['seed']}: leaves prior at {r['leaves_prior']}  final loss_itm "
                      f"{r['final_loss_itm']:.4f}  mean recall {r['mean_recall']:5.2f}{mlm}  "
                      f"({r['seconds']:.0f} s)", flush=True)
            line = (f"  => leaves prior {s['leaves_prior']}; final loss_itm "
                    f"{s['final_loss_itm'][0]:.4f} +- {s['final_loss_itm'][1]:.4f}; mean recall "
                    f"{s['mean_recall'][0]:.2f} +- {s['mean_recall'][1]:.2f}")
            for key in ("mlm_own_image", "mlm_blank_image", "mlm_other_image"):
                if key in s:
                    line += f"; {key} {s[key][0]:.3f} +- {s[key][1]:.3f}"
            print(line, flush=True)
            report["arms"][arm] = {"overrides": dotted, "rows": rows, "summary": s}
    print(f"  wall {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
