"""The strict config loader: overlays, overrides, errors that name key, file and line."""
from __future__ import annotations

from pathlib import Path

import pytest

from xinggan.config import Config, ConfigError, config_from_dict, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_dataset_configs_spell_out_the_released_recipe():
    market = load_config(CONFIGS / "market.yaml")
    fashion = load_config(CONFIGS / "deepfashion.yaml")
    assert (market.data.height, market.data.width) == (128, 64)
    assert (fashion.data.height, fashion.data.width) == (256, 176)
    assert market.model.norm == "batch" and fashion.model.norm == "instance"
    assert market.loss.gan_mode == "bce" and fashion.loss.gan_mode == "lsgan"
    assert (market.loss.lambda_gan, market.loss.lambda_l1, market.loss.lambda_perceptual) == (5, 50, 50)
    assert (fashion.loss.lambda_gan, fashion.loss.lambda_l1, fashion.loss.lambda_perceptual) == (5, 50, 1)
    assert market.loss.pool_size == 50 and fashion.loss.pool_size == 0
    assert market.model.discriminator.sigmoid and not fashion.model.discriminator.sigmoid
    # 700 and 300 official epochs of 125 iterations (4,000 pairs at batch 32)
    assert market.train.iterations == 700 * 125 and fashion.train.iterations == 300 * 125
    assert market.optim.lr_constant_iterations == 500 * 125
    assert fashion.optim.lr_decay_iterations == 100 * 125
    for cfg in (market, fashion):
        assert cfg.model.generator.n_blocks == 9
        assert cfg.model.generator.num_candidates == 10
        assert cfg.train.batch_size == 32
        assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2) == (2e-4, 0.5, 0.999)


def test_every_yaml_in_configs_loads():
    bases = sorted(CONFIGS.glob("*.yaml"))
    assert bases, "no configs found"
    for path in bases:
        assert isinstance(load_config(path), Config)


def test_overlay_and_override_order(tmp_path):
    over = write(tmp_path, "over.yaml", "model:\n  generator:\n    n_blocks: 4\n")
    cfg = load_config([CONFIGS / "market.yaml", over], ["train.batch_size=8", "model.generator.scales=[1, 2]"])
    assert cfg.model.generator.n_blocks == 4
    assert cfg.train.batch_size == 8
    assert cfg.model.generator.scales == (1, 2)
    assert cfg.model.generator.ngf == 64  # untouched keys keep the base value


def test_unknown_key_names_path_file_line_and_suggestion(tmp_path):
    bad = write(tmp_path, "bad.yaml", "model:\n  generator:\n    n_blok: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config([CONFIGS / "market.yaml", bad])
    msg = str(info.value)
    assert "model.generator.n_blok" in msg
    assert f"{bad}:3" in msg
    assert "model.generator.n_blocks" in msg


def test_unknown_override_key_suggests():
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "market.yaml", ["train.batchsize=4"])
    assert "train.batchsize" in str(info.value) and "train.batch_size" in str(info.value)
    assert "--set" in str(info.value)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.batch_size=abc", "expected an integer"),
        ("train.batch_size=2.5", "expected an integer"),
        ("model.generator.share_projections=3", "expected true or false"),
        ("loss.lambda_l1=-1", "must be zero or positive"),
        ("model.norm=group", "is not one of"),
        ("model.generator.scales=[1, 3]", "does not divide"),
        ("model.generator.dropout=1.5", "must be in [0, 1)"),
        ("model.generator.qk_reduction=7", "must divide the code width"),
        ("model.generator.enhanced_attention_scales=[2]", "not in scales"),
        ("train.iterations=0", "must be positive"),
    ],
)
def test_invalid_values(override, fragment):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "market.yaml", [override])
    assert key in str(info.value)
    assert fragment in str(info.value)


def test_wrong_type_in_file_names_file_and_line(tmp_path):
    bad = write(tmp_path, "bad.yaml", "train:\n  seed: 1\n  batch_size: [1]\n")
    with pytest.raises(ConfigError) as info:
        load_config([CONFIGS / "market.yaml", bad])
    assert "train.batch_size" in str(info.value) and f"{bad}:3" in str(info.value)


def test_section_given_a_value(tmp_path):
    bad = write(tmp_path, "bad.yaml", "model: 3\n")
    with pytest.raises(ConfigError, match="model: expected a mapping"):
        load_config(bad)


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = write(tmp_path, "bad.yaml", "model: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)


def test_yaml_round_trip(tmp_path):
    cfg = load_config(CONFIGS / "deepfashion.yaml", ["model.generator.scales=[1, 2, 4]"])
    path = write(tmp_path, "resolved.yaml", cfg.to_yaml())
    again = load_config(path)
    assert again == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


def test_frozen_and_replace():
    cfg = load_config(CONFIGS / "market.yaml")
    with pytest.raises(Exception):
        cfg.train.batch_size = 3  # type: ignore[misc]
    smaller = cfg.replace("train.batch_size=4")
    assert smaller.train.batch_size == 4 and cfg.train.batch_size == 32


def test_unquoted_off_is_read_as_the_choice(tmp_path):
    """YAML 1.1 turns an unquoted off into False; for a choice key it means the choice 'off'."""
    assert load_config(CONFIGS / "market.yaml", ["train.amp=off"]).train.amp == "off"
    over = write(tmp_path, "amp.yaml", "train:\n  amp: off\n")
    assert load_config([CONFIGS / "market.yaml", over]).train.amp == "off"
    assert load_config(CONFIGS / "market.yaml", ["train.amp=bf16"]).train.amp == "bf16"
    with pytest.raises(ConfigError, match="train.amp"):
        load_config(CONFIGS / "market.yaml", ["train.amp=on"])  # 'on' is not a choice


def test_model_name_follows_the_switches():
    # a XingGAN++ part switched on over the XingGAN config: the label follows
    cfg = load_config(CONFIGS / "market.yaml", ["model.generator.dense_fusion=true"])
    assert cfg.model.name == "xingganpp"
    assert load_config(CONFIGS / "market_xingganpp.yaml").model.name == "xingganpp"
    # asking for XingGAN++ by name alone builds nothing new: refused, with the way out
    with pytest.raises(ConfigError, match=r"--set model.name=xingganpp.*configs/<dataset>_xingganpp.yaml"):
        load_config(CONFIGS / "market.yaml", ["model.name=xingganpp"])
    with pytest.raises(ConfigError, match="these XingGAN\\+\\+ parts are on: scales"):
        load_config(CONFIGS / "market_xingganpp.yaml", ["model.name=xinggan"])


def test_train_tf32_is_a_checked_switch(tmp_path):
    """``train.tf32`` (CUDA: TF32 float32 products, as training runs; also read by test.py and
    scripts/benchmark.py): on in every shipped config, a boolean like train.deterministic, and
    a config saved before the key existed (e.g. in an older checkpoint) reads as on."""
    for path in sorted(CONFIGS.glob("*.yaml")):
        assert load_config(path).train.tf32 is True, path.name
        assert "tf32:" in path.read_text(), f"{path.name} does not spell out train.tf32"
    assert load_config(CONFIGS / "market.yaml", ["train.tf32=false"]).train.tf32 is False
    over = write(tmp_path, "strict.yaml", "train:\n  tf32: off\n")  # YAML 1.1: off is false
    assert load_config([CONFIGS / "market.yaml", over]).train.tf32 is False
    with pytest.raises(ConfigError, match=r"train\.tf32: expected true or false, got 'fast'"):
        load_config(CONFIGS / "market.yaml", ["train.tf32=fast"])
    bad = write(tmp_path, "bad.yaml", "train:\n  seed: 1\n  tf32: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config([CONFIGS / "market.yaml", bad])
    assert "train.tf32" in str(info.value) and f"{bad}:3" in str(info.value)
    older = load_config(CONFIGS / "market.yaml").to_dict()
    del older["train"]["tf32"]
    assert config_from_dict(older).train.tf32 is True
