"""Converting the authors' checkpoints: key rules, leftovers, and equivalence of the forward pass.

The released code cannot run here, so ``xinggan.released.network`` re-implements the released
networks literally from the layer list of docs/architecture.md, in plain functional ops that read the
OFFICIAL key names; it shares no code with the modules.  Synthetic checkpoints are made
from the released key listings (every key and shape of the released files) with random values.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from xinggan.checkpoint import load_checkpoint
from xinggan.config import load_config
from xinggan.inference import load_generator
from xinggan.models import build_discriminators, build_generator
from xinggan.released import key_listing
from xinggan.released.convert import (ConversionError, convert_released_state_dict,
                                      to_released_state_dict)
from xinggan.released.network import (released_discriminator_forward as released_discriminator,
                                       released_generator_forward as released_forward)

REPO = Path(__file__).resolve().parents[1]
DATASETS = {"market": ("market", "configs/market.yaml"),
            "deepfashion": ("fashion", "configs/deepfashion.yaml")}
KINDS = {"G": "generator", "D_PB": "shape_discriminator", "D_PP": "appearance_discriminator"}


def listing(dataset: str, net: str) -> dict:
    return key_listing(dataset, net)["state_dict"]


def synthetic_released(dataset: str, net: str, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """Random tensors of the listed shapes, at trained-like scales (fan-in scaled weights, so
    that every layer, the attention softmax included, is far from degenerate)."""
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for key, entry in listing(dataset, net).items():
        shape = entry["shape"]
        name = key.rsplit(".", 1)[-1]
        if entry["dtype"] == "int64":
            out[key] = torch.tensor(1000)
        elif name == "gamma":
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif name == "running_var":
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif name == "running_mean":
            out[key] = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 4:
            transposed = any(t in key for t in ("_up.0.", "_up.3.", "x2_con.", "atte_con"))
            if transposed:  # [in, out, k, k]; a 3x3 one has stride 2
                fan_in = shape[0] * shape[2] * shape[3] / (4 if shape[2] == 3 else 1)
            else:
                fan_in = shape[1] * shape[2] * shape[3]
            out[key] = torch.randn(shape, generator=g) * (2 / fan_in) ** 0.5
        elif name == "weight":  # BatchNorm
            out[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:  # biases
            out[key] = 0.1 * torch.randn(shape, generator=g)
    return out


def config(dataset: str):
    return load_config(REPO / DATASETS[dataset][1])


def inputs(height, width, batch=1, seed=5):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, height, width, generator=g) * 2 - 1
    poses = torch.rand(2, batch, 18, height, width, generator=g)
    return image, poses[0], poses[1]


@pytest.fixture(scope="module")
def market_released():
    return synthetic_released("market", "G", seed=1)


@pytest.fixture(scope="module")
def fashion_released():
    return synthetic_released("deepfashion", "G", seed=2)


def generator_with(cfg, state_dict):
    """The generator of ``cfg`` holding ``state_dict`` (built on meta: no init cost)."""
    with torch.device("meta"):
        generator = build_generator(cfg)
    generator.load_state_dict(state_dict, strict=True, assign=True)
    return generator


@pytest.mark.parametrize("dataset", ["market", "deepfashion"])
def test_converted_generator_reproduces_the_released_forward(dataset, market_released,
                                                            fashion_released):
    """Market at its size, 128 x 64; DeepFashion weights (InstanceNorm, conv biases) on
    64 x 32 inputs (the weights do not depend on the image size), to keep the test short."""
    cfg = config(dataset)
    released = market_released if dataset == "market" else fashion_released
    generator = generator_with(cfg, convert_released_state_dict("generator", released, cfg))
    generator.eval()
    x = inputs(128, 64) if dataset == "market" else inputs(64, 32)
    with torch.no_grad():
        ours = generator(*x)
        theirs = released_forward(released, *x, norm=cfg.model.norm)
        if dataset == "deepfashion":  # (the small one) the attention reaches the output, so
            no_attention = dict(released)  # the comparison covers it
            no_attention.update({k: torch.zeros_like(v) for k, v in released.items()
                                 if k.endswith("gamma")})
            without = released_forward(no_attention, *x, norm=cfg.model.norm)
            assert (theirs - without).abs().max() > 1e-2
    assert theirs.std() > 0.05
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dataset", ["market", "deepfashion"])
@pytest.mark.parametrize("net", ["D_PB", "D_PP"])
def test_converted_discriminators_reproduce_the_released_forward(dataset, net):
    cfg = config(dataset)
    released = synthetic_released(dataset, net, seed=3)
    shape_d, appearance_d = build_discriminators(cfg)
    d = shape_d if net == "D_PB" else appearance_d
    d.load_state_dict(convert_released_state_dict(KINDS[net], released, cfg))
    d.eval()
    channels = 21 if net == "D_PB" else 6
    x = torch.rand(1, channels, 32, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(
            d(x), released_discriminator(released, x, cfg.model.norm,
                                         cfg.model.discriminator.sigmoid),
            rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------
# Key rules and leftovers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["market", "deepfashion"])
@pytest.mark.parametrize("net", ["D_PB", "D_PP"])
def test_discriminator_keys_and_prefixes(dataset, net):
    cfg = config(dataset)
    released = synthetic_released(dataset, net)
    ours = convert_released_state_dict(KINDS[net], released, cfg)
    assert len(ours) == len(released)
    torch.testing.assert_close(ours["block3.conv_block.conv2.weight"],
                               released["model.12.conv_block.6.weight"], rtol=0, atol=0)
    prefixed = OrderedDict(("module." + k, v) for k, v in released.items())
    again = convert_released_state_dict(KINDS[net], prefixed, cfg)
    assert list(again) == list(ours) and all(torch.equal(again[k], ours[k]) for k in ours)


def test_generator_rules_map_the_right_tensors(market_released):
    cfg = config("market")
    ours = convert_released_state_dict("generator", market_released, cfg)
    expected_pairs = {
        "appearance_encoder.conv_in.weight": "model.stream1_down.1.weight",
        "shape_encoder.norm_down2.running_var": "model.stream2_down.8.running_var",
        "blocks.4.gamma": "model.att.4.gamma",
        "blocks.8.appearance_conv.norm2.bias": "model.att.8.conv_block_stream1.7.bias",
        "blocks.2.shape_conv.conv2.weight": "model.att.2.conv_block_stream2.6.weight",
        "blocks.0.attention.key.weight": "model.att.0.key_conv.weight",
        "appearance_decoder.conv_out.bias": "model.stream1_up.7.bias",
        "shape_decoder.up2.weight": "model.stream2_up.3.weight",
        "shape_decoder.project.weight": "model.x2_con.weight",
        "fusion.up1.weight": "model.atte_con.weight",  # ConvT layout [768, 256, 3, 3]
        "fusion.to_maps.weight": "model.atte_con2.weight",
    }
    for our_key, released_key in expected_pairs.items():
        assert torch.equal(ours[our_key], market_released[released_key]), our_key
    assert ours["fusion.up1.weight"].shape == (768, 256, 3, 3)
    assert len(ours) == len(market_released) == 317


def test_module_prefix_is_accepted(market_released):
    cfg = config("market")
    prefixed = OrderedDict(("module." + k, v) for k, v in market_released.items())
    a = convert_released_state_dict("generator", prefixed, cfg)
    b = convert_released_state_dict("generator", market_released, cfg)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("with_counter", [False, True])
def test_old_instance_norm_running_statistics_are_dropped(with_counter, fashion_released):
    """PyTorch < 0.4 saved running statistics of InstanceNorm layers (DeepFashion)."""
    cfg = config("deepfashion")
    released = fashion_released
    old = OrderedDict(released)
    stats = ("running_mean", "running_var") + (("num_batches_tracked",) if with_counter else ())
    for key, entry in listing("market", "G").items():  # the norm layers and their widths
        if key.rsplit(".", 1)[-1] in stats:
            old[key] = torch.zeros(entry["shape"]) if entry["shape"] else torch.tensor(0)
    n_norms = sum(k.endswith("running_mean") for k in listing("market", "G"))
    assert len(old) == len(released) + len(stats) * n_norms
    notes: list[str] = []
    converted = convert_released_state_dict("generator", old, cfg, notes)
    reference = convert_released_state_dict("generator", released, cfg)
    assert list(converted) == list(reference)
    assert all(torch.equal(converted[k], reference[k]) for k in reference)
    assert any("InstanceNorm running-statistics" in n for n in notes)


def test_missing_num_batches_tracked_is_filled(market_released):
    cfg = config("market")
    old = OrderedDict((k, v) for k, v in market_released.items()
                      if not k.endswith("num_batches_tracked"))
    notes: list[str] = []
    converted = convert_released_state_dict("generator", old, cfg, notes)
    assert converted["fusion.norm1.num_batches_tracked"].item() == 0
    assert any("num_batches_tracked" in n for n in notes)


def test_leftovers_are_listed_in_both_directions(market_released):
    cfg = config("market")
    broken = OrderedDict(market_released)
    del broken["model.att.3.value_conv.bias"]
    broken["model.att.9.gamma"] = torch.zeros(1)  # a tenth block that we do not have
    broken["model.att.0.query_conv.weight"] = torch.zeros(16, 256, 1, 1)
    with pytest.raises(ConversionError) as info:
        convert_released_state_dict("generator", broken, cfg)
    message = str(info.value)
    assert "blocks.3.attention.value.bias [256]" in message  # unfilled target, with shape
    assert "model.att.9.gamma [1]" in message  # unconsumed source, with shape
    assert "model.att.0.query_conv.weight [16, 256, 1, 1]" in message
    assert "blocks.0.attention.query.weight expects [32, 256, 1, 1]" in message


def test_wrong_dataset_config_is_explained(market_released, fashion_released):
    with pytest.raises(ConversionError, match="trained with model.norm: batch"):
        convert_released_state_dict("generator", market_released, config("deepfashion"))
    with pytest.raises(ConversionError, match="trained with model.norm: instance"):
        convert_released_state_dict("generator", fashion_released, config("market"))


def test_swapped_discriminators_are_explained():
    cfg = config("market")
    with pytest.raises(ConversionError, match="swapped"):
        convert_released_state_dict("shape_discriminator", synthetic_released("market", "D_PP"),
                                    cfg)


def test_another_generator_config_is_rejected(market_released):
    cfg = config("market").replace("model.generator.share_projections=false")
    with pytest.raises(ConversionError) as info:
        convert_released_state_dict("generator", market_released, cfg)
    assert "appearance_attention" in str(info.value) and "share_projections" in str(info.value)


# --------------------------------------------------------------------------------------
# The script, end to end, and load_generator on its output
# --------------------------------------------------------------------------------------


def test_convert_script_end_to_end(tmp_path, market_released):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "convert_official_checkpoint", REPO / "scripts" / "convert_official_checkpoint.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    torch.save(market_released, tmp_path / "latest_net_netG.pth")
    d_pb = synthetic_released("market", "D_PB", seed=4)
    torch.save(d_pb, tmp_path / "latest_net_netD_PB.pth")
    torch.save(synthetic_released("market", "D_PP", seed=5), tmp_path / "latest_net_netD_PP.pth")
    out = tmp_path / "converted.pt"
    code = script.main(["--config", str(REPO / "configs" / "market.yaml"),
                        "--generator", str(tmp_path / "latest_net_netG.pth"),
                        "--shape-discriminator", str(tmp_path / "latest_net_netD_PB.pth"),
                        "--appearance-discriminator", str(tmp_path / "latest_net_netD_PP.pth"),
                        "--out", str(out)])
    assert code == 0
    state = load_checkpoint(out)
    assert state["config"] == config("market").to_dict()
    assert "converted from" in state["source"] and "latest_net_netG.pth" in state["source"]
    assert torch.equal(state["shape_discriminator"]["conv_in.weight"], d_pb["model.1.weight"])
    generator = load_generator(out)  # its forward equals the released one: tested above
    assert not generator.training
    expected = convert_released_state_dict("generator", market_released, config("market"))
    loaded = generator.state_dict()
    assert list(loaded) == list(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)

    # a failing conversion returns an error code and writes nothing
    code = script.main(["--config", str(REPO / "configs" / "deepfashion.yaml"),
                        "--generator", str(tmp_path / "latest_net_netG.pth"),
                        "--out", str(tmp_path / "bad.pt")])
    assert code == 1 and not (tmp_path / "bad.pt").exists()


# --------------------------------------------------------------------------------------
# Export to the released key names (the side-by-side reference of the benchmark)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["market", "deepfashion"])
def test_export_to_released_keys_round_trips(dataset):
    cfg = config(dataset)
    torch.manual_seed(0)
    nets = {"generator": build_generator(cfg)}
    nets["shape_discriminator"], nets["appearance_discriminator"] = build_discriminators(cfg)
    for kind, net in nets.items():
        ours = net.state_dict()
        released = to_released_state_dict(kind, ours)
        assert len(released) == len(ours) and all(k.startswith("model.") for k in released)
        back = convert_released_state_dict(kind, released, cfg)
        assert list(back) == list(ours)
        for k in ours:
            assert torch.equal(back[k], ours[k]), k
        # the exported names and shapes are the released file's
        net_name = {"generator": "G", "shape_discriminator": "D_PB",
                    "appearance_discriminator": "D_PP"}[kind]
        listed = listing(dataset, net_name)
        assert {k: list(v.shape) for k, v in released.items()} == \
            {k: e["shape"] for k, e in listed.items()}


def test_export_refuses_networks_the_release_does_not_have():
    cfg = load_config(REPO / "configs/market_xingganpp.yaml")
    with torch.device("meta"):
        generator = build_generator(cfg)
    with pytest.raises(ConversionError, match="no place in the released network"):
        to_released_state_dict("generator", generator.state_dict())


@pytest.mark.parametrize("dataset,dropout", [("market", 0.0), ("market", 0.5),
                                             ("deepfashion", 0.5)])
def test_training_forward_and_backward_equal_the_released_ones(dataset, dropout):
    """In training mode (batch statistics; dropout drawn from the same seed), our generator and
    the released functional forward give the same output, the same weight gradients and the
    same updated BatchNorm statistics: the benchmark's reference row does the same work as
    ours, and the lean layers (fused pad + conv, ReLU + dropout, chunked attention) change
    nothing."""
    cfg = config(dataset).replace(f"model.generator.dropout={dropout}")
    torch.manual_seed(0)
    ours = build_generator(cfg).train()
    params = set(to_released_state_dict("generator", dict(ours.named_parameters())))
    released = {k: v.detach().clone().requires_grad_(k in params)
                for k, v in to_released_state_dict("generator", ours.state_dict()).items()}
    h, w = (64, 32) if dataset == "market" else (64, 44)
    x = inputs(h, w, batch=2)
    target = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.manual_seed(123)
    out_ours = ours(*x)
    (out_ours - target).abs().mean().backward()
    torch.manual_seed(123)
    out_theirs = released_forward(released, *x, norm=cfg.model.norm, training=True,
                                  dropout=dropout)
    (out_theirs - target).abs().mean().backward()
    torch.testing.assert_close(out_ours, out_theirs, rtol=1e-5, atol=1e-5)
    grads = to_released_state_dict("generator", {k: p.grad for k, p in ours.named_parameters()})
    checked = 0
    for k, g in grads.items():
        torch.testing.assert_close(g, released[k].grad, rtol=1e-4, atol=1e-6, msg=k)
        checked += 1
    assert checked == len(list(ours.parameters()))
    buffers = to_released_state_dict("generator", dict(ours.named_buffers()))
    for k, b in buffers.items():  # the functional forward does not count batches
        if not k.endswith("num_batches_tracked"):
            torch.testing.assert_close(b, released[k].detach(), msg=k)
