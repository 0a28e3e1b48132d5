"""Every spec in experiments/ is accepted by ``POST /experiments?dry_run=true`` on the real app
under uvicorn (default limits, YAML body as ``ablate submit`` sends it) and stores nothing; it
expands into valid variants, and each variant's config builds its model and objectives (a
ConfigError raised only at trial start, e.g. VILLA without ITM, would otherwise surface hours into
a run)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from service.api import create_app
from service.settings import Settings
from service.specs import expand, parse_spec
from service.stack.embedded import serve_in_thread
from trainer.model.forward import VocabInfo
from trainer.model.pretrainer import Pretrainer

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
SPECS = sorted(EXPERIMENTS.glob("*.yaml"))
VOCAB = VocabInfo(size=60, pad_id=0, cls_id=2, sep_id=3, mask_id=4, unk_id=1)


def test_the_experiments_folder_holds_the_paper_specs() -> None:
    names = {p.stem for p in SPECS}
    assert {"albef_table1", "uniter_table2", "vlmo_mome", "adversarial_and_alignment",
            "loss_weights"} <= names


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_spec_expands_to_valid_buildable_variants(path: Path) -> None:
    text = path.read_text()
    assert text.lstrip().startswith("#"), "each spec starts with a header comment"
    expansion = expand(parse_spec(text))
    names = [v.name for v in expansion.variants]
    assert len(names) == len(set(names)) >= 2
    assert expansion.baseline in names and expansion.seeds
    for variant in expansion.variants:
        cfg = variant.config
        assert cfg.enabled_objectives()
        torch.manual_seed(0)
        Pretrainer(cfg, VOCAB)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, store): the app with the default spec limits; Ray and MLflow are unreachable
    on purpose, so a dry run that tried to submit anything would show up as an error."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("dry"), ray_address="http://127.0.0.1:9",
                        mlflow_tracking_uri="http://127.0.0.1:9")
    app = create_app(settings, reconcile=False)
    with serve_in_thread(app) as base:
        yield base, app.state.store


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_spec_is_accepted_by_a_dry_run_post_over_http(served, path: Path) -> None:
    base, store = served
    before = store.counts()
    r = httpx.post(f"{base}/experiments", params={"dry_run": "true"}, content=path.read_bytes(),
                   headers={"content-type": "application/yaml"}, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    expansion = expand(parse_spec(path.read_text()))
    assert [v["name"] for v in out["variants"]] == [v.name for v in expansion.variants]
    assert out["trials"] == len(expansion.trials) == len(out["variants"]) * len(out["seeds"])
    assert out["baseline"] == expansion.baseline
    assert all(len(v["trial_keys"]) == len(out["seeds"]) for v in out["variants"])
    assert store.counts() == before, "a dry run stores nothing"


def _expansion(stem: str):
    return expand(parse_spec((EXPERIMENTS / f"{stem}.yaml").read_text()))


def test_albef_table1_rows_follow_the_paper() -> None:
    e = _expansion("albef_table1")
    assert e.spec.design == "add_one_in" and len(e.seeds) >= 3
    rows = [v.config for v in e.variants]
    assert all(c.data.caption_noise > 0 for c in rows)
    on = [(c.objectives.itc.enabled, c.objectives.itm.hard_negatives,
           c.objectives.itc.distill, c.objectives.mlm.distill) for c in rows]
    assert on == [(False, False, False, False), (True, False, False, False),
                  (True, True, False, False), (True, True, True, False), (True, True, True, True)]
    assert all(c.objectives.mlm.enabled and c.objectives.itm.enabled for c in rows)


def test_uniter_table2_objective_mixes() -> None:
    e = _expansion("uniter_table2")
    mixes = {v.name: set(v.config.enabled_objectives()) for v in e.variants}
    assert mixes == {
        "ITM": {"itm"}, "MLM": {"mlm"}, "MLM+ITM": {"itm", "mlm"},
        "+MRC-kl": {"itm", "mlm", "mrc_kl"}, "+MRFR": {"itm", "mlm", "mrfr"},
        "+MRC-kl+MRFR": {"itm", "mlm", "mrc_kl", "mrfr"},
        "+WRA": {"itm", "mlm", "mrc_kl", "mrfr", "wra"},
    }


def test_vlmo_spec_compares_the_two_architectures() -> None:
    e = _expansion("vlmo_mome")
    assert {v.config.model.arch for v in e.variants} == {"albef", "mome"}
