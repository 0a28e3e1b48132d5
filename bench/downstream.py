"""Can the downstream tasks see pretraining? Each task fine-tuned on three trunks, side by side.

Trunks, per seed:
- ``random``: the model as initialised, no warm start, no pretraining;
- ``warm_start``: the shared unimodal warm start only (encoders pretrained apart, fusion as
  initialised);
- ``pretrained``: the warm start, then vision-language pretraining with the preset's recipe
  (ITC + ITM with hard negatives + MLM, with MoD) at the reproductions' budget (500 steps,
  800 training images, 20% noisy captions, as ``experiments/albef_table1.yaml``).

Then every task of ``eval.downstream`` is fine-tuned on each trunk with the defaults of
``trainer.config.downstream`` (or ``--set eval.downstream....`` overrides) and scored on its
test split; ``minimal_pairs`` is zero-shot. A task is fit for ablations when a pretrained
trunk clearly beats a random one and no trunk saturates it. The defaults are decided here, on
seeds of this bench's own (3000..), never on a reproduction.

    .venv/bin/python bench/downstream.py                       # 3 seeds, every task
    .venv/bin/python bench/downstream.py --tasks vqa,ve --seeds 1 --quick

Two jobs run at a time (one torch thread each: the machine has two cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PRETRAIN: dict[str, Any] = {
    "schedule.steps": 500, "schedule.warmup_steps": 50, "data.num_train_images": 800,
    "data.num_val_images": 50, "data.num_test_images": 200, "data.caption_noise": 0.2,
    "runtime.threads": 1,
}
QUICK: dict[str, Any] = {
    "schedule.steps": 20, "init.steps": 20,
    **{f"eval.downstream.{t}.finetune.steps": 20 for t in ("vqa", "nlvr", "ve", "grounding")},
    **{f"eval.downstream.{t}.finetune.eval_every": 10 for t in ("vqa", "nlvr", "ve", "grounding")},
    **{f"eval.downstream.{t}.data.{n}": v for t in ("vqa", "nlvr", "ve", "grounding")
       for n, v in (("num_train", 128), ("num_val", 64), ("num_test", 64))},
}
TRUNKS = ("random", "warm_start", "pretrained")
TASKS = ("vqa", "nlvr", "ve", "grounding", "minimal_pairs")


def run_job(preset: str, dotted: dict[str, Any], seed: int, trunk: str,
            tasks: list[str]) -> dict[str, Any]:
    import torch

    from trainer.config import build_config
    from trainer.downstream.run import evaluate_task
    from trainer.loop import Trainer

    torch.set_num_threads(1)
    extra = {"init.warm_start": False} if trunk == "random" else {}
    cfg = build_config(preset, dotted={**dotted, **extra,
                                       "eval.downstream.tasks": tasks})
    start = time.perf_counter()
    trainer = Trainer(cfg, seed, checkpoint_dir=None)
    if trunk == "pretrained":
        trainer.run()
    pretrain_s = time.perf_counter() - start
    row: dict[str, Any] = {"seed": seed, "trunk": trunk, "pretrain_s": pretrain_s, "tasks": {}}
    for task in tasks:
        t0 = time.perf_counter()
        ev = evaluate_task(trainer, task, trial_key=f"bench-{seed}-{trunk}")
        row["tasks"][task] = {"metrics": ev.metrics, "val": ev.val, "best_step": ev.best_step,
                              "history": ev.history, "details": ev.details,
                              "protocol": ev.protocol, "seconds": time.perf_counter() - t0}
    return row


def parse_sets(items: list[str]) -> dict[str, Any]:
    from trainer.config import parse_override

    return dict(parse_override(item) for item in items)


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:5.1f} +- {100 * sd:4.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--trunks", default=",".join(TRUNKS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=3000)
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="dotted override for every trunk, e.g. "
                    "eval.downstream.vqa.finetune.steps=800")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny budgets")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    tasks = args.tasks.split(",")
    trunks = args.trunks.split(",")
    dotted = {**PRETRAIN, **(QUICK if args.quick else {}), **parse_sets(args.sets)}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    jobs = [(seed, trunk) for seed in seeds for trunk in trunks]
    print(f"downstream bench preset={args.preset} seeds={seeds[0]}..{seeds[-1]} "
          f"trunks={','.join(trunks)} tasks={','.join(tasks)}", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(run_job, [args.preset] * len(jobs), [dotted] * len(jobs),
                             [s for s, _ in jobs], [t for _, t in jobs],
                             [tasks] * len(jobs)))
    print("\n| task | metric | " + " | ".join(trunks) + " |")
    print("|---|---|" + "---|" * len(trunks))
    summary: dict[str, Any] = {}
    for task in tasks:
        names = list(rows[0]["tasks"][task]["metrics"])
        for name in names:
            cells = []
            for trunk in trunks:
                values = [r["tasks"][task]["metrics"][name] for r in rows if r["trunk"] == trunk]
                summary.setdefault(task, {}).setdefault(name, {})[trunk] = values
                cells.append(spread(values))
            print(f"| {task} | {name} | " + " | ".join(cells) + " |")
    seconds = {t: statistics.fmean(r["tasks"][t]["seconds"] for r in rows) for t in tasks}
    print("\nseconds per fine-tune (mean): "
          + ", ".join(f"{t} {s:.0f}" for t, s in seconds.items()))
    print(f"wall {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"dotted": dotted, "rows": rows, "summary": summary},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
