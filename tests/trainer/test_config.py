"""TrainConfig: presets, strictness (errors name the field), overrides, canonical hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import PRESETS, ConfigError, build_config, load_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds(name: str) -> None:
    cfg = build_config(name)
    assert cfg.preset == name
    assert cfg.enabled_objectives() == ["itc", "itm", "mlm"]


def test_base_is_albefs_setup() -> None:
    c = build_config("base")
    vision = c.model.vision
    assert (c.data.image_size, vision.patch_size, vision.hidden_size) == (256, 16, 768)
    assert (c.model.text.num_text_layers, c.model.text.num_fusion_layers) == (6, 6)
    assert c.model.embed_dim == 256 and c.model.momentum == 0.995
    itc = c.objectives.itc
    assert (itc.queue_size, itc.alpha, itc.temp, itc.temp_min, itc.temp_max) == (
        65536, 0.4, 0.07, 0.001, 0.5)
    assert itc.learnable_temp and c.objectives.itm.hard_negatives
    mlm = c.objectives.mlm
    assert (mlm.mask_prob, mlm.mask_token_frac, mlm.random_token_frac) == (0.15, 0.8, 0.1)
    assert c.data.max_text_len == 30
    assert (c.optim.lr, c.optim.weight_decay) == (1e-4, 0.02)
    assert c.schedule.alpha_ramp_steps is None  # one epoch


@pytest.mark.parametrize(
    ("dotted", "field"),
    [
        ({"objectives.itc.wieght": 1.0}, "objectives.itc.wieght"),
        ({"optim.lr": -1}, "optim.lr"),
        ({"schedule.steps": "many"}, "schedule.steps"),
        ({"model.vision.hidden_size": 65}, "model.vision.hidden_size"),
        ({"objectives.itc.temp": 0.9}, "objectives.itc.temp"),
        ({"data.dataset": "imagenet"}, "data.dataset"),
        ({"nonsense.key": 1}, "nonsense"),
        ({"objectives.itc.enabled": False, "objectives.itm.enabled": False,
          "objectives.mlm.enabled": False}, "objectives"),
    ],
)
def test_bad_values_name_the_field(dotted: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config("tiny", dotted=dotted)
    assert err.value.field == field
    assert err.value.reason


def test_unknown_preset_is_named() -> None:
    with pytest.raises(ConfigError, match="preset"):
        build_config("huge")


def test_overrides_parse_yaml_values(tmp_path: Path) -> None:
    cfg = load_config("tiny", ["schedule.steps=7", "objectives.itc.enabled=false",
                               "optim.betas=[0.8, 0.9]", "data.caption_noise=0.25"])
    assert cfg.schedule.steps == 7 and not cfg.objectives.itc.enabled
    assert cfg.optim.betas == (0.8, 0.9) and cfg.data.caption_noise == 0.25
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("tiny", ["schedule.steps"])


def test_yaml_file_with_preset_and_set(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("preset: tiny\nschedule: {steps: 11}\nobjectives: {mlm: {enabled: false}}\n")
    cfg = load_config(str(path), ["schedule.warmup_steps=2"])
    assert (cfg.schedule.steps, cfg.schedule.warmup_steps) == (11, 2)
    assert cfg.enabled_objectives() == ["itc", "itm"]
    with pytest.raises(ConfigError, match="neither a preset"):
        load_config(str(tmp_path / "missing.yaml"))


def test_canonical_hash_is_stable_and_ignores_result_neutral_fields() -> None:
    a = build_config("tiny")
    assert a.config_hash() == build_config("tiny").config_hash()
    assert a.config_hash() == build_config(
        "tiny", dotted={"runtime.output_dir": "elsewhere", "runtime.log_every": 3}
    ).config_hash()
    assert a.config_hash() != build_config("tiny", dotted={"optim.lr": 2e-3}).config_hash()
    assert a.flat()["objectives.itc.enabled"] is True


@pytest.mark.parametrize(("preset", "digest"), [
    # tiny's changed once on purpose, with cross-attention at LeCun's scale (issue 23):
    # 61ec8ecebed328af before it
    ("tiny", "247a064ba1081243"), ("small", "b34ccac65d25cd23"), ("base", "88cd42b6b2d572b5"),
])
def test_the_presets_keep_the_hashes_they_had_before_sharded_data(preset, digest) -> None:
    """Hashes computed before issue 25's data fields and issue 24's eval.downstream: a stored
    trial's key must keep its meaning. The new fields at their defaults stay out of the
    canonical JSON, and the input pipeline's speed knobs never enter it."""
    cfg = build_config(preset)
    assert cfg.config_hash() == digest
    assert build_config(preset, dotted={"data.num_workers": 4, "data.prefetch_factor": 8,
                                        "data.augment": False}).config_hash() == digest
    for changed in ({"data.augment": True}, {"data.max_bad_fraction": 0.5}):
        assert build_config(preset, dotted=changed).config_hash() != digest


@pytest.mark.parametrize(("path", "value"), [
    ("optim.lr", float("inf")),
    ("optim.betas", [float("nan"), 0.999]),
    ("optim.weight_decay", float("nan")),
    ("objectives.itc.temp", float("nan")),
    ("model.dropout", float("-inf")),
])
def test_non_finite_numbers_are_refused_naming_the_field(path: str, value: object) -> None:
    """An infinite learning rate or a NaN beta used to pass validation and fail three retries
    at run time; now the config refuses it where it is cheapest."""
    with pytest.raises(ConfigError) as err:
        build_config("tiny", dotted={path: value})
    assert err.value.field.startswith(path)


@pytest.mark.parametrize(("path", "value"), [
    ("data.benchmark_seed", -1),
    ("data.benchmark_seed", 2**31),
    ("init.seed", 2**31),
    ("init.seed", 2**63),
    ("data.root", "d/" * 2049),  # 4098 characters: past Linux's PATH_MAX
    ("data.tokenizer_path", "x" * 4097),
    ("model.vision.pretrained", "x" * 4097),
    ("runtime.output_dir", "x" * 4097),
    ("objectives.villa.tasks", ["itm", "mlm", "itm"]),
])
def test_unbounded_values_are_refused_naming_the_field(path: str, value: object) -> None:
    """Seeds past what torch, numpy and the store take, and strings or lists that every variant
    would store again (a 1 MB path times 64 variants) stop at the config."""
    with pytest.raises(ConfigError) as err:
        build_config("tiny", dotted={path: value})
    assert err.value.field.startswith(path)


def test_the_bounds_themselves_are_accepted() -> None:
    cfg = build_config("tiny", dotted={"data.benchmark_seed": 2**31 - 1, "init.seed": 2**31 - 1,
                                       "runtime.output_dir": "x" * 4096})
    assert cfg.data.benchmark_seed == cfg.init.seed == 2**31 - 1
