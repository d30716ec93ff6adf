"""The XingGAN networks: released sizes, key layout, every switch on tiny configs, golden output."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from xinggan.checkpoint import CheckpointError, save_checkpoint
from xinggan.config import load_config
from xinggan.inference import load_generator
from xinggan.models import (
    ResnetDiscriminator,
    XingGenerator,
    build_discriminators,
    build_generator,
    count_parameters,
    set_attention_impl,
)
from xinggan.released import key_listing
from xinggan.released.convert import map_released_key

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden" / "tiny_generator.pt"

TINY = ["data.height=64", "data.width=32", "model.generator.ngf=8",
        "model.generator.n_blocks=2", "model.generator.num_candidates=2",
        "model.discriminator.ndf=8", "model.discriminator.n_blocks=2"]

# Released parameter counts (docs/architecture.md; xinggan/released/keys/*.json)
RELEASED = {
    "market": (44_853_189, 3_977_408, 3_930_368),
    "deepfashion": (44_844_634, 3_975_424, 3_928_384),
}


def tiny_config(*overrides: str, dataset: str = "market"):
    return load_config(REPO / "configs" / f"{dataset}.yaml", TINY + list(overrides))


def tiny_inputs(cfg, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.data.height, cfg.data.width
    image = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    poses = torch.rand(2, batch, 18, h, w, generator=g)
    return image, poses[0], poses[1]


def set_gammas(model: torch.nn.Module, value: float = 0.5) -> None:
    """Nonzero attention scales, so that the attention paths reach the output."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(value)


# --------------------------------------------------------------------------------------
# The released networks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["market", "deepfashion"])
def test_released_parameter_counts(dataset):
    cfg = load_config(REPO / "configs" / f"{dataset}.yaml")
    with torch.device("meta"):  # building without memory: only sizes are checked
        generator = build_generator(cfg)
        shape_d, appearance_d = build_discriminators(cfg)
    assert (count_parameters(generator), count_parameters(shape_d),
            count_parameters(appearance_d)) == RELEASED[dataset]


@pytest.mark.parametrize("dataset", ["market", "deepfashion"])
def test_state_dicts_map_one_to_one_onto_released_keys(dataset):
    cfg = load_config(REPO / "configs" / f"{dataset}.yaml")
    with torch.device("meta"):
        networks = {"G": build_generator(cfg)}
        networks["D_PB"], networks["D_PP"] = build_discriminators(cfg)
    kinds = {"G": "generator", "D_PB": "shape_discriminator",
             "D_PP": "appearance_discriminator"}
    for name, net in networks.items():
        listing = key_listing(dataset, name)
        ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        assert len(ours) == listing["num_state_dict_entries"]
        assert count_parameters(net) == listing["num_parameters"]
        mapped = {}
        for key, entry in listing["state_dict"].items():
            target = map_released_key(kinds[name], key)
            assert target in ours, (name, key, target)
            assert ours[target] == tuple(entry["shape"]), (name, key, target)
            mapped[target] = key
        assert set(mapped) == set(ours)  # a bijection: no two released keys share a target


def test_module_names_follow_the_paper():
    cfg = tiny_config()
    top = [name for name, _ in build_generator(cfg).named_children()]
    assert top == ["appearance_encoder", "shape_encoder", "blocks", "appearance_decoder",
                   "shape_decoder", "fusion"]
    names = " ".join(k for k, _ in build_generator(cfg).named_parameters())
    assert "stream" not in names


# --------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------


def test_generator_initialisation():
    cfg = tiny_config("model.init_gain=0.05")
    torch.manual_seed(0)
    g = build_generator(cfg)
    convs = [m for m in g.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.mean().item()) < 2e-3
    assert weights.std().item() == pytest.approx(0.05, rel=0.02)
    norms = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bn_w = torch.cat([m.weight for m in norms])
    assert bn_w.mean().item() == pytest.approx(1.0, abs=5e-3)
    assert bn_w.std().item() == pytest.approx(0.02, rel=0.15)
    assert all(torch.all(m.bias == 0) for m in norms)
    # biases keep PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), not zero
    out_conv = g.appearance_decoder.conv_out
    bound = 1 / (out_conv.weight[0].numel() ** 0.5)
    assert out_conv.bias.abs().max() > 0 and out_conv.bias.abs().max() <= bound
    gammas = [p for n, p in g.named_parameters() if n.endswith("gamma")]
    assert len(gammas) == cfg.model.generator.n_blocks and all(torch.all(p == 0) for p in gammas)


def test_discriminators_keep_default_initialisation():
    torch.manual_seed(0)
    shape_d, _ = build_discriminators(tiny_config())
    w = shape_d.block1.conv_block.conv1.weight  # default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1 / (w[0].numel() ** 0.5)
    assert w.abs().max() <= bound and w.std() > 0.5 * bound / 3 ** 0.5
    assert torch.all(shape_d.norm_in.weight == 1)


# --------------------------------------------------------------------------------------
# Tiny generator with every switch
# --------------------------------------------------------------------------------------

SWITCHES = [
    [],
    ["model.norm=instance"],
    ["model.generator.share_projections=false"],
    ["model.generator.appearance_update=false"],
    ["model.generator.shape_update=false"],
    ["model.generator.appearance_update=false", "model.generator.shape_update=false"],
    ["model.generator.share_projections=false", "model.generator.shape_update=false"],
    ["model.generator.fusion=false"],
    ["model.generator.n_blocks=0"],
    ["model.generator.n_blocks=1", "model.generator.num_candidates=1"],
    ["model.generator.dropout=0.0", "model.generator.qk_reduction=4"],
    ["model.generator.attention_impl=reference"],
    ["model.generator.attention_impl=chunked", "model.generator.attention_chunk=5"],
]


@pytest.mark.parametrize("overrides", SWITCHES, ids=lambda o: ",".join(o) or "released")
def test_tiny_generator_shapes_and_backward(overrides):
    cfg = tiny_config(*overrides)
    torch.manual_seed(0)
    g = build_generator(cfg)
    set_gammas(g)
    image, source_pose, target_pose = tiny_inputs(cfg)
    out = g(image, source_pose, target_pose)
    assert out.shape == (2, 3, 64, 32)
    assert torch.isfinite(out).all()
    assert out.abs().max() <= 1.0 + 1e-6  # convex combination of values in [-1, 1]
    out.square().mean().backward()
    without_grad = [n for n, p in g.named_parameters() if p.grad is None]
    if cfg.model.generator.fusion:
        assert without_grad == []


def test_dropout_is_on_in_training_and_off_in_eval():
    cfg = tiny_config()
    torch.manual_seed(0)
    g = build_generator(cfg)
    set_gammas(g)
    inputs = tiny_inputs(cfg)
    with torch.no_grad():
        assert not torch.equal(g(*inputs), g(*inputs))  # dropout draws differ
        g.eval()
        assert torch.equal(g(*inputs), g(*inputs))


def test_count_parameters_counts_a_shared_module_once_and_no_buffers():
    linear = torch.nn.Linear(3, 4)  # 3 x 4 weights + 4 biases
    net = torch.nn.Sequential(linear, torch.nn.BatchNorm1d(4), linear)  # BatchNorm: 4 + 4
    assert count_parameters(net) == (3 * 4 + 4) + (4 + 4)  # running statistics not counted
    assert count_parameters(torch.nn.ReLU()) == 0


def test_separate_projections_add_exactly_one_attention_and_gamma_per_block():
    shared = build_generator(tiny_config())
    separate = build_generator(tiny_config("model.generator.share_projections=false"))
    c = 4 * 8
    attention = (c * c // 8 + c // 8) * 2 + c * c + c
    assert count_parameters(separate) - count_parameters(shared) == 2 * (attention + 1)
    block = separate.blocks[0]
    assert block.appearance_attention is not block.shape_attention
    shared_block = shared.blocks[0]
    assert shared_block._direction("appearance")[0] is shared_block._direction("shape")[0]


def _manual_block(block, a_in, s_in, gamma_a, gamma_s, attn_a, attn_s):
    a = block.appearance_conv(a_in)
    s = block.shape_conv(s_in)
    a_new = a + gamma_a * attn_a(a, s) if gamma_a is not None else a
    s_new = s + gamma_s * attn_s(s, a) if gamma_s is not None else s
    return a_new, torch.cat([a_new, s_new], 1)


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("appearance_update,shape_update",
                         list(itertools.product([True, False], repeat=2)))
def test_xing_block_updates(share, appearance_update, shape_update):
    """A' = A + g_a attn_a(A, S), S' = S + g_s attn_s(S, A), both from the pre-update codes."""
    cfg = tiny_config(f"model.generator.share_projections={str(share).lower()}",
                      f"model.generator.appearance_update={str(appearance_update).lower()}",
                      f"model.generator.shape_update={str(shape_update).lower()}")
    torch.manual_seed(0)
    block = build_generator(cfg).blocks[1].eval()
    with torch.no_grad():
        for i, (name, p) in enumerate(block.named_parameters()):
            if name.endswith("gamma"):
                p.fill_(0.3 + 0.4 * i / 100)
    a_in = torch.randn(2, 32, 16, 8)
    s_in = torch.randn(2, 64, 16, 8)
    if share:
        attn = getattr(block, "attention", None)
        gamma = getattr(block, "gamma", None)
        parts = (gamma if appearance_update else None, gamma if shape_update else None,
                 attn, attn)
    else:
        parts = (getattr(block, "appearance_gamma", None), getattr(block, "shape_gamma", None),
                 getattr(block, "appearance_attention", None),
                 getattr(block, "shape_attention", None))
    assert (parts[0] is not None) == appearance_update
    assert (parts[1] is not None) == shape_update
    with torch.no_grad():
        expected = _manual_block(block, a_in, s_in, *parts)
        got = block(a_in, s_in)
    for e, o in zip(expected, got):
        torch.testing.assert_close(o, e, rtol=0, atol=0)
    assert got[1].shape == (2, 64, 16, 8)


def test_fusion_is_one_weighted_sum_over_candidates():
    cfg = tiny_config()
    torch.manual_seed(0)
    g = build_generator(cfg).eval()
    set_gammas(g)
    image, sp, tp = tiny_inputs(cfg)
    with torch.no_grad():
        out, details = g(image, sp, tp, return_details=True)
    maps, candidates = details["maps"], details["candidates"]
    assert maps.shape == (2, 5, 64, 32) and candidates.shape == (2, 4, 3, 64, 32)
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 64, 32))
    expected = sum(maps[:, k:k + 1] * candidates[:, k] for k in range(4)) + maps[:, 4:5] * image
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_no_fusion_outputs_the_appearance_decoder_image():
    cfg = tiny_config("model.generator.fusion=false")
    torch.manual_seed(0)
    g = build_generator(cfg).eval()
    assert g.fusion is None and g.shape_decoder is None
    assert g.appearance_decoder.conv_out.out_channels == 3
    image, sp, tp = tiny_inputs(cfg)
    with torch.no_grad():
        out = g(image, sp, tp)
        a = g.appearance_encoder(image)
        s = g.shape_encoder(torch.cat([sp, tp], 1))
        for block in g.blocks:
            a, s = block(a, s)
        x = a
        for layer in list(g.appearance_decoder.children())[:-1]:  # all but the tanh
            x = layer(x)
        expected = torch.tanh(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_attention_implementations_give_the_same_generator_output():
    cfg = tiny_config()
    torch.manual_seed(0)
    g = build_generator(cfg).eval()
    set_gammas(g, 1.0)
    inputs = tiny_inputs(cfg)
    outs = {}
    with torch.no_grad():
        for impl in ("sdpa", "reference", "chunked"):
            outs[impl] = set_attention_impl(g, impl, chunk=7)(*inputs)
    torch.testing.assert_close(outs["sdpa"], outs["reference"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs["chunked"], outs["reference"], rtol=1e-5, atol=1e-5)


def test_generator_input_checks():
    cfg = tiny_config()
    g = build_generator(cfg)
    image, sp, tp = tiny_inputs(cfg)
    with pytest.raises(ValueError, match="18 channels"):
        g(image, sp[:, :17], tp)
    with pytest.raises(ValueError, match="3, H, W"):
        g(image[:, :2], sp, tp)


@pytest.mark.parametrize("override", ["model.generator.scales=[1,2]",
                                      "model.generator.enhanced_attention=true",
                                      "model.generator.dense_fusion=true"])
def test_xingganpp_switches_change_the_network(override):
    """Every XingGAN++ switch builds a different network (none is silently ignored)."""
    base = build_generator(tiny_config())
    g = build_generator(tiny_config(override))
    assert count_parameters(g) != count_parameters(base)
    image, sp, tp = tiny_inputs(tiny_config(override))
    assert g.eval()(image, sp, tp).shape == image.shape


# --------------------------------------------------------------------------------------
# Discriminators
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [
    [], ["model.norm=instance", "model.discriminator.sigmoid=false"],
    ["model.discriminator.head=patch"], ["model.discriminator.n_blocks=0"],
    ["model.discriminator.head=patch", "model.discriminator.sigmoid=false"],
], ids=lambda o: ",".join(o) or "released")
def test_tiny_discriminators(overrides):
    cfg = tiny_config(*overrides)
    d = cfg.model.discriminator
    shape_d, appearance_d = build_discriminators(cfg)
    assert isinstance(shape_d, ResnetDiscriminator)
    image, _, target_pose = tiny_inputs(cfg)
    channels = 1 if d.head == "patch" else 4 * d.ndf
    out_shape = shape_d(image, target_pose)
    out_appearance = appearance_d(image, image.flip(0))
    for out in (out_shape, out_appearance):
        assert out.shape == (2, channels, 16, 8)
        if d.sigmoid:
            assert out.min() >= 0 and out.max() <= 1
        else:
            assert out.min() < 0
    (out_shape.mean() + out_appearance.mean()).backward()
    assert all(p.grad is not None for p in shape_d.parameters())
    # one concatenated tensor (a pair from the image pool) is the same input
    shape_d.eval()
    with torch.no_grad():
        torch.testing.assert_close(shape_d(torch.cat([image, target_pose], 1)),
                                   shape_d(image, target_pose), rtol=0, atol=0)
    with pytest.raises(ValueError, match="21 input channels"):
        shape_d(image, image)


# --------------------------------------------------------------------------------------
# Golden regression of the tiny generator
# --------------------------------------------------------------------------------------


def randomise_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Trained-like random weights: fan-in scaled convs (so attention energies are O(1) and the
    softmax is far from uniform), perturbed norms, running statistics, gammas in [0.5, 1.5]."""
    g = torch.Generator().manual_seed(seed)

    def rand(shape, std, mean=0.0):
        return torch.randn(shape, generator=g) * std + mean

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                k = m.weight[0, 0].numel()
                fan_in = (m.in_channels * k if isinstance(m, torch.nn.Conv2d)
                          else m.in_channels * k / (m.stride[0] * m.stride[1]))
                m.weight.copy_(rand(m.weight.shape, (2 / fan_in) ** 0.5))
                if m.bias is not None:
                    m.bias.copy_(rand(m.bias.shape, 0.1))
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(rand(m.weight.shape, 0.1, 1.0))
                m.bias.copy_(rand(m.bias.shape, 0.1))
                m.running_mean.copy_(rand(m.running_mean.shape, 0.1))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return model


def golden_outputs() -> dict:
    """The tiny generator's eval output under a fixed seed, for both normalisations.

    Written to tests/golden/tiny_generator.pt by ``python tests/golden/make_golden.py``.
    """
    outputs = {}
    for norm in ("batch", "instance"):
        cfg = tiny_config(f"model.norm={norm}")
        g = randomise_(build_generator(cfg), seed=1234).eval()
        with torch.no_grad():
            outputs[norm] = g(*tiny_inputs(cfg, batch=2, seed=99))
    return outputs


def test_golden_tiny_generator_output():
    assert GOLDEN.is_file(), "missing golden file: run python tests/golden/make_golden.py"
    stored = torch.load(GOLDEN, weights_only=True)
    current = golden_outputs()
    assert set(stored) == set(current)
    for norm in current:
        torch.testing.assert_close(current[norm], stored[norm], rtol=0, atol=1e-4,
                                   msg=lambda m: f"{norm}: generator output changed. {m}")


# --------------------------------------------------------------------------------------
# load_generator
# --------------------------------------------------------------------------------------


def test_load_generator_round_trip(tmp_path):
    cfg = tiny_config("model.norm=instance")
    torch.manual_seed(0)
    g = build_generator(cfg)
    set_gammas(g, 0.7)
    path = save_checkpoint({"config": cfg.to_dict(), "generator": g.state_dict()},
                           tmp_path / "tiny.pt")
    loaded = load_generator(path)
    assert isinstance(loaded, XingGenerator) and not loaded.training
    inputs = tiny_inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs), g.eval()(*inputs), rtol=0, atol=0)


def test_load_generator_rejects_weights_of_another_model(tmp_path):
    cfg = tiny_config()
    other = build_generator(tiny_config("model.generator.n_blocks=1",
                                        "model.generator.share_projections=false"))
    path = save_checkpoint({"config": cfg.to_dict(), "generator": other.state_dict()},
                           tmp_path / "other.pt")
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    message = str(info.value)
    assert "do not match" in message and "blocks.1." in message and "unexpected" in message
    assert "appearance_attention" in message
