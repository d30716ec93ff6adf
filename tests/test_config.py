"""The strict config loader: overlays, overrides, errors that name key, file and line."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xinggan.config import Config, ConfigError, config_from_dict, load_config, to_dict
from xinggan.hints import closest, did_you_mean

from helpers import leaves

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


def test_dataset_configs_set_every_key():
    """The dataset configs write out every key, so a recipe never takes a value from the
    dataclass defaults (which only fill keys of older saved configs and partial trees)."""
    schema = {key for key, _ in leaves(to_dict(Config()))}
    complete = [p for p in sorted(CONFIGS.glob("*.yaml"))
                if "_base_" not in yaml.safe_load(p.read_text())]
    assert {p.name for p in complete} == {"market.yaml", "deepfashion.yaml", "toy.yaml"}
    for path in complete:
        assert {key for key, _ in leaves(yaml.safe_load(path.read_text()))} == schema, path.name


XINGGANPP_SWITCHES = {("model", "name")} | {
    ("model", "generator", key) for key in ("share_projections", "scales", "enhanced_attention",
                                            "enhanced_attention_scales", "dense_fusion")}


@pytest.mark.parametrize("dataset", ["market", "deepfashion"])
def test_xingganpp_configs_hold_only_the_switches(dataset):
    """configs/<dataset>_xingganpp.yaml is the dataset's XingGAN recipe (through _base_) plus
    the XingGAN++ switches, and nothing else."""
    raw = yaml.safe_load((CONFIGS / f"{dataset}_xingganpp.yaml").read_text())
    assert raw.pop("_base_") == f"{dataset}.yaml"
    assert {key for key, _ in leaves(raw)} == XINGGANPP_SWITCHES
    xinggan = load_config(CONFIGS / f"{dataset}.yaml")
    pp = load_config(CONFIGS / f"{dataset}_xingganpp.yaml")
    assert pp == xinggan.replace(*(f"{'.'.join(key)}={value}" for key, value in leaves(raw)))
    # and every switch changes the XingGAN recipe
    before, after = dict(leaves(to_dict(xinggan))), dict(leaves(to_dict(pp)))
    assert {key for key in before if before[key] != after[key]} == XINGGANPP_SWITCHES


def test_base_is_resolved_relative_to_the_file_and_overlaid(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path, "recipe.yaml",
          f"_base_: {CONFIGS / 'market.yaml'}\ntrain:\n  batch_size: 16\n  seed: 3\n")
    child = write(tmp_path / "sub", "child.yaml", "_base_: ../recipe.yaml\ntrain:\n  seed: 7\n")
    cfg = load_config(child)
    assert (cfg.train.batch_size, cfg.train.seed) == (16, 7)  # the nearest file wins
    assert cfg.replace("train.batch_size=32", "train.seed=0") == load_config(CONFIGS / "market.yaml")
    # a file with a base given after another config overlays that config with the whole chain
    over = load_config([CONFIGS / "deepfashion.yaml", child])
    assert over.data.dataset == "market" and over.train.seed == 7
    # later files and overrides still go on top
    later = load_config([child, CONFIGS / "ablations" / "blocks_6.yaml"], ["train.seed=1"])
    assert later.train.seed == 1 and later.model.generator.n_blocks == 6


def test_errors_through_a_base_name_the_file_and_line(tmp_path):
    base = write(tmp_path, "base.yaml", "train:\n  seed: 0\n  batch_size: -2\n")
    child = write(tmp_path, "child.yaml", "# on base.yaml\n_base_: base.yaml\ntrain:\n  seed: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(child)
    assert "train.batch_size: must be positive" in str(info.value) and f"{base}:3" in str(info.value)
    fixed = write(tmp_path, "fixed.yaml", "_base_: base.yaml\ntrain:\n  batch_size: 2\n  sed: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(fixed)
    assert "train.sed: unknown key (did you mean 'train.seed'?)" in str(info.value)
    assert f"{fixed}:4" in str(info.value)


def test_base_cycles_and_bad_bases_are_refused(tmp_path):
    write(tmp_path, "a.yaml", "_base_: b.yaml\n")
    b = write(tmp_path, "b.yaml", "train:\n  seed: 1\n_base_: a.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "a.yaml")
    msg = str(info.value)
    assert msg.startswith("_base_: 'a.yaml' makes a cycle of bases") and f"({b}:3)" in msg
    assert f"{tmp_path / 'a.yaml'} -> {b} -> {tmp_path / 'a.yaml'}" in msg
    itself = write(tmp_path, "self.yaml", "_base_: ./self.yaml\n")
    with pytest.raises(ConfigError, match=r"makes a cycle of bases"):
        load_config(itself)
    missing = write(tmp_path, "missing.yaml", "model:\n  norm: batch\n_base_: nowhere.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert "nowhere.yaml: config file not found" in str(info.value) and f"{missing}:3" in str(info.value)
    for value in ("[market.yaml]", "''", "null"):
        bad = write(tmp_path, "bad.yaml", f"_base_: {value}\n")
        with pytest.raises(ConfigError, match=rf"_base_: expected the file name .* \({bad}:1\)"):
            load_config(bad)
    nested = write(tmp_path, "nested.yaml", "train:\n  _base_: market.yaml\n")
    with pytest.raises(ConfigError, match="train._base_: unknown key"):
        load_config(nested)
    with pytest.raises(ConfigError, match="_base_: unknown key"):
        load_config(CONFIGS / "market.yaml", ["_base_=deepfashion.yaml"])


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
        ("data.num_workers=-1", "must be zero or positive"),
        ("model.discriminator.n_blocks=-1", "must be zero or positive"),
        ("optim.beta2=1.0", "must be in [0, 1)"),
        ("train.device=tpu", "must be auto, cpu, cuda or cuda:N"),
        ("data.width=30", "must be divisible by 4"),
        ("eval.batch_size=0", "must be positive"),
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
    for path in sorted(CONFIGS.glob("*.yaml")):  # (the dataset configs write it out)
        assert load_config(path).train.tf32 is True, path.name
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


def test_zero_is_allowed_where_it_means_something():
    cfg = load_config(CONFIGS / "market.yaml", ["data.num_workers=0", "model.generator.n_blocks=0",
                                                "loss.pool_size=0", "train.image_every=0",
                                                "eval.max_pairs=0", "optim.lr_constant_iterations=0"])
    assert cfg.data.num_workers == 0 and cfg.model.generator.n_blocks == 0


def test_misspelt_protocol_and_metric_name_the_nearest():
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "market.yaml", ["eval.protocol=patn-fashion"])
    msg = str(info.value)
    assert msg.startswith("eval.protocol: 'patn-fashion' is not one of 'patn-market', ")
    assert "(did you mean 'patn-deepfashion'?) (--set eval.protocol=patn-fashion)" in msg
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "market.yaml", ["eval.metrics=[ssim, pkch]"])
    assert str(info.value).startswith("eval.metrics[1]: 'pkch' is not one of 'ssim', ")
    assert "(did you mean 'pckh'?)" in str(info.value)
    with pytest.raises(ConfigError, match=r"eval.metrics: expected a list of names \('ssim', "):
        load_config(CONFIGS / "market.yaml", ["eval.metrics=ssim"])
    gfla = load_config(CONFIGS / "market.yaml", ["eval.protocol=gfla", "eval.metrics=[fid, is]"])
    assert gfla.eval.protocol == "gfla" and gfla.eval.metrics == ("fid", "is")


def test_did_you_mean():
    assert did_you_mean("patn-markt", ["patn-market", "gfla"]) == " (did you mean 'patn-market'?)"
    assert did_you_mean("zzz", ["patn-market", "gfla"]) == ""
    assert did_you_mean(3, [1, 2, 3]) == " (did you mean '3'?)"  # compared as strings
    assert closest("on", ["off", "auto"]) == "off" and closest("on", ["off", "auto"], cutoff=0.5) is None
