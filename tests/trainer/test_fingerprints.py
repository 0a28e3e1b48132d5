"""Named random streams and the fingerprints that let a comparison verify its pairing.

Expected values are rebuilt from the definitions (the first epoch's permutation of the pairs,
sha256 over a state dict), not from the functions under test."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tests.trainer.helpers import tiny
from trainer.fingerprints import order_fingerprint, weights_fingerprint
from trainer.loop import Trainer
from trainer.streams import RandomStreams, derive_seed

DATA = {"data.num_train_images": 48, "data.num_val_images": 8, "data.num_test_images": 8,
        "data.captions_per_image": 2, "data.batch_size": 8, "schedule.steps": 3,
        "schedule.warmup_steps": 1, "runtime.threads": 1, "objectives.itc.queue_size": 16,
        "eval.rerank_k": 2}


def cfg(tmp: Path, **dotted: object):
    return tiny(**{**DATA, "data.root": str(tmp / "data"), **dotted})


def test_streams_are_independent_deterministic_and_resumable() -> None:
    assert derive_seed(1, "mlm") == derive_seed(1, "mlm")
    assert len({derive_seed(s, n) for s in range(4) for n in ("mlm", "itm", "villa")}) == 12
    a, b = RandomStreams(7), RandomStreams(7)
    torch.rand(5, generator=a.generator("itm"))  # drawing from one stream ...
    assert torch.equal(torch.rand(4, generator=a.generator("mlm")),  # ... leaves the others
                       torch.rand(4, generator=b.generator("mlm")))
    saved = a.state()
    after = torch.rand(3, generator=a.generator("mlm"))
    c = RandomStreams(7)
    c.load(saved)
    assert torch.equal(torch.rand(3, generator=c.generator("mlm")), after)
    assert a.fingerprint("mlm") == RandomStreams(7).fingerprint("mlm")
    assert a.fingerprint("mlm") != RandomStreams(8).fingerprint("mlm")


def test_weights_fingerprint_sees_any_value_name_or_shape() -> None:
    torch.manual_seed(0)
    a = nn.Linear(3, 2)
    b = nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert weights_fingerprint(a) == weights_fingerprint(b)
    with torch.no_grad():
        b.bias[1] += 1e-7
    assert weights_fingerprint(a) != weights_fingerprint(b)
    renamed = nn.Sequential(a)  # same values under other names: another module
    assert weights_fingerprint(renamed) != weights_fingerprint(a)
    assert weights_fingerprint(nn.Linear(2, 3)) != weights_fingerprint(nn.Linear(3, 2))


def test_arms_that_differ_in_an_objective_share_every_fingerprint_they_both_have(
    tmp_path: Path,
) -> None:
    on = Trainer(cfg(tmp_path), 3, checkpoint_dir=None)
    off = Trainer(cfg(tmp_path, **{"objectives.itc.enabled": False}), 3, checkpoint_dir=None)
    common = set(on.fingerprints) & set(off.fingerprints)
    assert {"data_order", "init.model.vision", "init.model.text", "stream.mlm"} <= common
    assert all(on.fingerprints[k] == off.fingerprints[k] for k in common)
    # data order: the first epoch's permutation of the pairs, drawn as the sampler defines it
    perm = torch.randperm(48 * 2, generator=torch.Generator().manual_seed(3 * 1_000_003))
    assert on.fingerprints["data_order"] == order_fingerprint(perm, 8)


def test_another_batch_size_or_seed_breaks_the_pairing(tmp_path: Path) -> None:
    base = Trainer(cfg(tmp_path), 3, checkpoint_dir=None).fingerprints
    wider = Trainer(cfg(tmp_path, **{"data.batch_size": 12}), 3, checkpoint_dir=None).fingerprints
    other = Trainer(cfg(tmp_path), 4, checkpoint_dir=None).fingerprints
    assert wider["data_order"] != base["data_order"]
    assert wider["init.model.vision"] == base["init.model.vision"]  # same init, other order
    seeded = [k for k in base if k.startswith(("data_order", "init.model.", "stream."))]
    assert all(other[k] != base[k] for k in seeded)
    # ITC's temperature and its queue's initial keys (a fixed generator) do not use the seed
    assert other["init.objective.itc"] == base["init.objective.itc"]


def test_hard_negatives_do_not_move_the_mlm_masks(tmp_path: Path) -> None:
    """Common random numbers: with one global generator, ITM's negative sampling would shift
    every MLM mask drawn after it; with named streams both arms mask the same tokens."""
    hard = Trainer(cfg(tmp_path), 5, checkpoint_dir=None)
    rand = Trainer(cfg(tmp_path, **{"objectives.itm.hard_negatives": False}), 5,
                   checkpoint_dir=None)
    for t in (hard, rand):
        for _ in range(2):
            t.train_step()
    assert torch.equal(hard.streams.generator("mlm").get_state(),
                       rand.streams.generator("mlm").get_state())
