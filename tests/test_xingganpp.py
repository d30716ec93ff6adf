"""XingGAN++ (our reading of the paper): windowed multi-scale cross-attention, Enhanced
Attention, dense co-attention fusion, the XingGAN++ / ablation configs, and the assembled
generator, which runs forward and backward at both resolutions and trains through train.py.

Every reference here is written independently of the modules: plain loops, masks and
``torch.nn.functional`` calls on the modules' own weights.
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from xinggan import load_generator
from xinggan.checkpoint import load_checkpoint
from xinggan.config import load_config, to_dict
from xinggan.models import build_discriminators, build_generator, count_parameters
from xinggan.models.dense_fusion import DenseCoAttentionFusion
from xinggan.models.enhanced_attention import EnhancedAttention
from xinggan.models.fusion import CoAttentionFusion
from xinggan.models.multiscale_attention import (
    MultiScaleCrossAttention,
    build_multiscale_attention,
    enhanced_scales_of,
    from_windows,
    to_windows,
    uses_multiscale_attention,
)
from xinggan.prep.toy import make_toy_dataset
from xinggan.released import key_listing

from helpers import leaves, load_script

REPO = Path(__file__).resolve().parents[1]
BASES = sorted((REPO / "configs").glob("*.yaml"))
OVERLAYS = sorted((REPO / "configs" / "ablations").glob("*.yaml"))
TINY = ["model.generator.ngf=8", "model.generator.n_blocks=2", "model.generator.num_candidates=2",
        "model.generator.enhanced_attention_dim=8", "model.generator.dense_channels=4",
        "model.discriminator.ndf=8", "model.discriminator.n_blocks=1"]


# --------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------


def _flat(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """1x1 conv as (B, N, C_out) with N = h*w row-major."""
    return F.conv2d(x, conv.weight, conv.bias).flatten(2).transpose(1, 2)


def _window_mask(h: int, w: int, s: int) -> torch.Tensor:
    """(N, N) bool: True where query i and key j lie in the same s x s-grid window."""
    rows = torch.arange(h).repeat_interleave(w) // (h // s)
    cols = torch.arange(w).repeat(h) // (w // s)
    window = rows * s + cols  # (N,)
    return window[:, None] == window[None, :]


def _masked_attention(module: MultiScaleCrossAttention, scale: int, x, y) -> torch.Tensor:
    """Brute force over the full grid: energy Q^T K, masked to same-window pairs, softmax, V."""
    b, c, h, w = x.shape
    q = _flat(module.query[str(scale)], x)
    k = _flat(module.key[str(scale)], y)
    v = _flat(module.value, x)
    energy = q @ k.transpose(1, 2)  # (B, N, N), no scaling
    energy = energy.masked_fill(~_window_mask(h, w, scale), float("-inf"))
    out = torch.softmax(energy, dim=-1) @ v  # (B, N, C)
    return out.transpose(1, 2).reshape(b, c, h, w)


def _layer_norm(x, ln: nn.LayerNorm):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def _literal_enhanced(ea: EnhancedAttention, q, k, v) -> torch.Tensor:
    """One window at a time, written from the formulas of docs/xingganpp.md, section 2."""
    outs = []
    for wi in range(q.shape[0]):
        corr = q[wi] @ k[wi].T  # (Nq, Nk)
        refined = corr.clone()
        tokens = [corr[:, j] for j in range(corr.shape[1])]  # key j's column, length Nq
        qs = torch.stack([_layer_norm(ea.query_weight @ t + ea.query_bias, ea.query_norm)
                          for t in tokens])
        ks = torch.stack([_layer_norm(ea.key_weight @ t + ea.key_bias, ea.key_norm)
                          for t in tokens])
        vs = torch.stack([ea.value_weight @ t + ea.value_bias for t in tokens])
        weights = torch.softmax(qs @ ks.T / math.sqrt(ea.dim), dim=-1)  # (Nk, Nk)
        for j in range(len(tokens)):
            inner = (weights[j][:, None] * vs).sum(0)  # (d,)
            refined[:, j] = corr[:, j] + ea.output_weight @ inner
        outs.append(torch.softmax(refined, dim=-1) @ v[wi])
    return torch.stack(outs)


def _randomise(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


# --------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_window_layout_is_s_by_s_grid_of_row_major_windows(scale):
    h, w = 8, 4  # non-square grid: at s = 2 windows are 4 x 2, at s = 4 they are 2 x 1
    rows = torch.arange(h)[:, None].expand(h, w)
    cols = torch.arange(w)[None, :].expand(h, w)
    x = torch.stack([rows, cols]).float()[None].repeat(2, 1, 1, 1)  # (2, 2, h, w)
    x[1] += 100  # second sample
    windows = to_windows(x, scale)
    wh, ww = h // scale, w // scale
    assert windows.shape == (2 * scale * scale, wh * ww, 2)
    for b in range(2):
        for i in range(scale):
            for j in range(scale):
                win = windows[b * scale * scale + i * scale + j]
                expected = [(100 * b + i * wh + r, 100 * b + j * ww + c)
                            for r in range(wh) for c in range(ww)]
                assert [tuple(p) for p in win.long().tolist()] == expected
    assert torch.equal(from_windows(windows, scale, h, w), x)


# --------------------------------------------------------------------------------------
# multi-scale attention
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["sdpa", "reference", "chunked"])
def test_scale_one_is_global_attention(impl):
    torch.manual_seed(0)
    m = MultiScaleCrossAttention(16, (8, 4), scales=(1,), qk_reduction=4, impl=impl, chunk=5)
    _randomise(m)
    x, y = torch.randn(2, 16, 8, 4), torch.randn(2, 16, 8, 4)
    q, k, v = _flat(m.query["1"], x), _flat(m.key["1"], y), _flat(m.value, x)
    expected = torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1), v)
    expected = expected.transpose(1, 2).reshape(2, 16, 8, 4)
    torch.testing.assert_close(m(x, y), expected, rtol=1e-5, atol=1e-5)
    # exactly XingGAN's attention parameters: query, key, value and nothing to merge
    assert sorted(k for k, _ in m.named_parameters()) == [
        "key.1.bias", "key.1.weight", "query.1.bias", "query.1.weight", "value.bias",
        "value.weight"]


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("impl", ["sdpa", "reference", "chunked"])
def test_windowed_attention_is_masked_global_attention(scale, impl):
    torch.manual_seed(1)
    m = MultiScaleCrossAttention(8, (8, 4), scales=(scale,), qk_reduction=2, impl=impl, chunk=3)
    _randomise(m, seed=scale)
    x, y = torch.randn(3, 8, 8, 4), torch.randn(3, 8, 8, 4)
    torch.testing.assert_close(m(x, y), _masked_attention(m, scale, x, y), rtol=1e-5, atol=1e-5)


def test_multi_scale_merge_concatenates_scales():
    torch.manual_seed(2)
    scales = (1, 2, 4)
    m = MultiScaleCrossAttention(8, (8, 4), scales=scales, qk_reduction=2)
    _randomise(m, seed=7)
    x, y = torch.randn(2, 8, 8, 4), torch.randn(2, 8, 8, 4)
    per_scale = torch.cat([_masked_attention(m, s, x, y) for s in scales], dim=1)
    expected = F.conv2d(per_scale, m.merge.weight, m.merge.bias)
    torch.testing.assert_close(m(x, y), expected, rtol=1e-5, atol=1e-5)
    # one value projection shared by every scale, own query/key per scale
    assert isinstance(m.value, nn.Conv2d) and set(m.query) == set(m.key) == {"1", "2", "4"}
    assert m.query["2"].weight.shape == (4, 8, 1, 1) and m.value.weight.shape == (8, 8, 1, 1)


def test_scale_that_does_not_divide_the_grid_raises():
    with pytest.raises(ValueError, match="scale 3"):
        MultiScaleCrossAttention(8, (8, 4), scales=(1, 3), qk_reduction=2)
    with pytest.raises(ValueError, match="scale 8"):
        MultiScaleCrossAttention(8, (8, 4), scales=(8,), qk_reduction=2)  # 8 does not divide 4
    m = MultiScaleCrossAttention(8, (8, 4), scales=(1, 2), qk_reduction=2)
    with pytest.raises(ValueError, match="scale 2"):
        m(torch.randn(1, 8, 5, 4), torch.randn(1, 8, 5, 4))
    with pytest.raises(ValueError, match="not in scales"):
        MultiScaleCrossAttention(8, (8, 4), scales=(1, 2), qk_reduction=2, enhanced_scales=(4,))


# --------------------------------------------------------------------------------------
# Enhanced Attention
# --------------------------------------------------------------------------------------


def test_enhanced_attention_matches_literal_formulas():
    torch.manual_seed(3)
    ea = EnhancedAttention(num_queries=6, num_keys=6, dim=4).double()
    _randomise(ea, seed=3)  # LayerNorm affine and the back-projection included
    assert ea.output_weight.abs().sum() > 0
    q, k, v = (torch.randn(3, 6, c, dtype=torch.float64) for c in (2, 2, 5))
    torch.testing.assert_close(ea(q, k, v), _literal_enhanced(ea, q, k, v))


def test_enhanced_attention_starts_as_identity_refinement():
    ea = EnhancedAttention(num_queries=8, num_keys=8, dim=4)
    assert torch.count_nonzero(ea.output_weight) == 0  # zero-initialised back-projection
    corr = torch.randn(5, 8, 8)
    assert torch.equal(ea.refine(corr), corr)
    with pytest.raises(ValueError, match="8 queries x 8 keys"):
        ea.refine(torch.randn(5, 6, 8))


def test_enhanced_scales_with_zero_output_equal_plain_block():
    torch.manual_seed(4)
    plain = MultiScaleCrossAttention(8, (8, 4), scales=(1, 2, 4), qk_reduction=2)
    enhanced = MultiScaleCrossAttention(8, (8, 4), scales=(1, 2, 4), qk_reduction=2,
                                        enhanced_scales=(1, 2, 4), enhanced_dim=4)
    _randomise(plain, seed=4)
    missing, unexpected = enhanced.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(key.startswith("enhanced.") for key in missing)
    x, y = torch.randn(2, 8, 8, 4), torch.randn(2, 8, 8, 4)
    torch.testing.assert_close(enhanced(x, y), plain(x, y), rtol=1e-5, atol=1e-5)
    # a trained (non-zero) back-projection changes the output
    _randomise(enhanced.enhanced, seed=5)
    assert not torch.allclose(enhanced(x, y), plain(x, y), atol=1e-3)


def test_enhanced_attention_switch_per_scale():
    torch.manual_seed(6)
    plain = MultiScaleCrossAttention(8, (8, 4), scales=(1, 2, 4), qk_reduction=2)
    partial = MultiScaleCrossAttention(8, (8, 4), scales=(1, 2, 4), qk_reduction=2,
                                       enhanced_scales=(2,), enhanced_dim=4)
    assert set(partial.enhanced) == {"2"} and partial.enhanced["2"].num_queries == 4 * 2
    _randomise(plain, seed=6)
    partial.load_state_dict(plain.state_dict(), strict=False)
    _randomise(partial.enhanced, seed=8)
    x, y = torch.randn(2, 8, 8, 4), torch.randn(2, 8, 8, 4)
    value = plain.value(x)
    for s in (1, 2, 4):
        args = (plain.query[str(s)](x), plain.key[str(s)](y), value)
        same = torch.allclose(partial.attend_at_scale(s, *args), plain.attend_at_scale(s, *args),
                              atol=1e-6)
        assert same == (s != 2), s
    # switched off everywhere: the plain multi-scale block, parameter for parameter
    off = MultiScaleCrossAttention(8, (8, 4), scales=(1, 2, 4), qk_reduction=2, enhanced_scales=())
    assert [k for k, _ in off.named_parameters()] == [k for k, _ in plain.named_parameters()]


def test_gradients_reach_every_parameter_and_input():
    torch.manual_seed(9)
    m = MultiScaleCrossAttention(8, (8, 4), scales=(1, 2, 4), qk_reduction=2,
                                 enhanced_scales=(1, 4), enhanced_dim=4)
    _randomise(m.enhanced, seed=9)  # non-zero back-projection, as after some training
    x = torch.randn(2, 8, 8, 4, requires_grad=True)
    y = torch.randn(2, 8, 8, 4, requires_grad=True)
    m(x, y).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------
# config -> module
# --------------------------------------------------------------------------------------


def test_config_to_modules():
    market = load_config(REPO / "configs/market.yaml")
    assert not uses_multiscale_attention(market.model.generator)
    pp = load_config(REPO / "configs/market_xingganpp.yaml")
    g = pp.model.generator
    assert uses_multiscale_attention(g) and enhanced_scales_of(g) == (1, 2, 4)
    m = build_multiscale_attention(g, 4 * g.ngf, (32, 16))  # full size: building is cheap
    assert m.scales == (1, 2, 4) and m.query["1"].out_channels == 32
    assert [m.enhanced[s].num_queries for s in ("1", "2", "4")] == [512, 128, 32]
    df = load_config(REPO / "configs/deepfashion_xingganpp.yaml").model.generator
    m = build_multiscale_attention(df, 256, (64, 44))
    assert m.enhanced_scales == (2, 4) and m.enhanced["2"].num_queries == 704
    # enhanced_attention_scales: [] means every scale; enhanced_attention: false means none
    single = load_config([REPO / "configs/deepfashion_xingganpp.yaml",
                          REPO / "configs/ablations/single_scale.yaml"]).model.generator
    assert enhanced_scales_of(single) == (1,)
    off = load_config([REPO / "configs/market_xingganpp.yaml",
                       REPO / "configs/ablations/no_enhanced_attention.yaml"]).model.generator
    assert enhanced_scales_of(off) == () and uses_multiscale_attention(off)


# --------------------------------------------------------------------------------------
# dense co-attention fusion
# --------------------------------------------------------------------------------------


def _literal_fusion(head: DenseCoAttentionFusion, norm: str, source, app_cands, shape_cands,
                    a, s, block_codes, caf=None):
    """The released head as functional calls; ``caf`` optionally supplies the CAF weights."""
    w = caf or {k: v for k, v in head.state_dict().items()}
    parts = [a, s]
    for t, (a_t, s_t) in enumerate(block_codes):
        conv = head.stage_compressions[t]
        parts.append(F.conv2d(torch.cat([a_t, s_t], 1), conv.weight, conv.bias))
    x = torch.cat(parts, 1)

    def normalise(x, prefix):
        if norm == "instance":
            return F.instance_norm(x)
        return F.batch_norm(x, w[prefix + ".running_mean"], w[prefix + ".running_var"],
                            w[prefix + ".weight"], w[prefix + ".bias"], training=False)

    x = F.relu(normalise(F.conv_transpose2d(x, w["up1.weight"], w.get("up1.bias"), stride=2,
                                            padding=1, output_padding=1), "norm1"))
    x = F.relu(normalise(F.conv_transpose2d(x, w["up2.weight"], w.get("up2.bias"), stride=2,
                                            padding=1, output_padding=1), "norm2"))
    maps = torch.softmax(F.conv_transpose2d(x, w["to_maps.weight"], w.get("to_maps.bias")), 1)
    candidates = list(app_cands.unbind(1)) + list(shape_cands.unbind(1)) + [source]
    image = sum(maps[:, k:k + 1] * c for k, c in enumerate(candidates))
    return image, maps


def _fusion_inputs(n_blocks: int, ngf: int = 4, n: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    a, s = r(2, 4 * ngf, 4, 2), r(2, 8 * ngf, 4, 2)
    blocks = [(r(2, 4 * ngf, 4, 2), r(2, 8 * ngf, 4, 2)) for _ in range(n_blocks)]
    return r(2, 3, 16, 8), r(2, n, 3, 16, 8), r(2, n, 3, 16, 8), a, s, blocks


@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("dense", [False, True])
def test_dense_fusion_matches_functional_head(norm, dense):
    ngf, n, t = 4, 3, 2
    head = DenseCoAttentionFusion(4 * ngf, 8 * ngf, ngf, norm, n,
                                  [(4 * ngf, 8 * ngf)] * t if dense else [], dense_channels=5)
    _randomise(head, seed=11)
    if norm == "batch":
        for bn in (head.norm1, head.norm2):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    head.eval()
    inputs = _fusion_inputs(t)
    image, maps = head(*inputs)
    ref_image, ref_maps = _literal_fusion(head, norm, *inputs[:5], inputs[5] if dense else [])
    torch.testing.assert_close(maps, ref_maps, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(image, ref_image, rtol=1e-5, atol=1e-6)
    assert head.up1.in_channels == 12 * ngf + (5 * t if dense else 0)
    assert maps.shape == (2, 2 * n + 1, 16, 8)


class _ReleasedNamesCAF(nn.Module):
    """A CAF head with the released key names (model.atte_con ... atte_con2)."""

    def __init__(self, ngf: int, n: int, norm: str) -> None:
        super().__init__()
        bias = norm == "instance"

        def norm_layer(c):
            return nn.BatchNorm2d(c) if norm == "batch" else nn.InstanceNorm2d(c)

        self.atte_con = nn.ConvTranspose2d(12 * ngf, 4 * ngf, 3, 2, 1, 1, bias=bias)
        self.atte_norm = norm_layer(4 * ngf)
        self.atte_con1 = nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, 2, 1, 1, bias=bias)
        self.atte_norm1 = norm_layer(2 * ngf)
        self.atte_con2 = nn.ConvTranspose2d(2 * ngf, 2 * n + 1, 1, bias=bias)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_load_caf_weights_dense_off_equals_caf_and_dense_starts_as_caf(norm):
    ngf, n, t = 4, 3, 3
    caf = _ReleasedNamesCAF(ngf, n, norm)
    _randomise(caf, seed=12)
    caf_state = caf.state_dict()
    if norm == "batch":
        caf_state["atte_norm.running_var"].uniform_(0.5, 2.0)
        caf_state["atte_norm1.running_var"].uniform_(0.5, 2.0)
    as_named = dict(zip(DenseCoAttentionFusion(4 * ngf, 8 * ngf, ngf, norm, n)
                        .head_state_dict(), caf_state.values()))
    inputs = _fusion_inputs(t, seed=1)
    ref_image, ref_maps = _literal_fusion(None, norm, *inputs[:5], [], caf=as_named)

    plain = DenseCoAttentionFusion(4 * ngf, 8 * ngf, ngf, norm, n)
    plain.load_caf_state_dict(caf_state)
    dense = DenseCoAttentionFusion(4 * ngf, 8 * ngf, ngf, norm, n, [(4 * ngf, 8 * ngf)] * t)
    _randomise(dense.stage_compressions, seed=13)
    dense.load_caf_state_dict(caf_state)
    for head in (plain, dense):
        image, maps = head.eval()(*inputs)
        torch.testing.assert_close(maps, ref_maps, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(image, ref_image, rtol=1e-5, atol=1e-6)
    # the stage rows are zero only because of zero_dense: without it the maps differ
    dense.load_caf_state_dict(caf_state, zero_dense=False)
    _randomise(dense.stage_compressions, seed=14)
    with torch.no_grad():
        dense.up1.weight[12 * ngf:].normal_()
    assert not torch.allclose(dense(*inputs)[1], ref_maps, atol=1e-4)
    with pytest.raises(ValueError, match="shape"):
        DenseCoAttentionFusion(4 * ngf, 8 * ngf, ngf, norm, n + 1).load_caf_state_dict(caf_state)


def test_dense_fusion_needs_every_block_code():
    head = DenseCoAttentionFusion(16, 32, 4, "batch", 3, [(16, 32)] * 2)
    inputs = _fusion_inputs(1)
    with pytest.raises(ValueError, match="all 2 blocks, got 1"):
        head(*inputs)


def test_dense_off_equals_base_caf_head():
    ngf, n = 4, 3
    for norm in ("batch", "instance"):
        caf = CoAttentionFusion(12 * ngf, ngf, norm, n)
        _randomise(caf, seed=15)
        head = DenseCoAttentionFusion(4 * ngf, 8 * ngf, ngf, norm, n)
        head.load_caf_state_dict(caf.state_dict())
        inputs = _fusion_inputs(0, seed=2)
        for a, b in zip(head.eval()(*inputs), caf.eval()(*inputs)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("dataset", ["market", "deepfashion"])
def test_dense_off_head_has_the_released_layer_shapes(dataset):
    released = key_listing(dataset, "G")["state_dict"]
    released = [tuple(v["shape"]) for k, v in released.items() if k.startswith("model.atte_")]
    cfg = load_config(REPO / f"configs/{dataset}.yaml")
    head = DenseCoAttentionFusion.from_config(cfg)
    assert [tuple(v.shape) for v in head.state_dict().values()] == released
    # XingGAN++: only the first layer's input width grows, by T * dense_channels
    pp = load_config(REPO / f"configs/{dataset}_xingganpp.yaml")
    dense = DenseCoAttentionFusion.from_config(pp)
    assert dense.up1.weight.shape == (768 + 9 * 32, 256, 3, 3)
    assert len(dense.stage_compressions) == 9
    assert dense.stage_compressions[0].weight.shape == (32, 768, 1, 1)


# --------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES, ids=lambda p: p.name)
def test_every_config_and_overlay_loads_and_builds(base):
    """Each overlay sets model.generator keys only and changes nothing else; the networks of
    every combination build (on the meta device: sizes only)."""
    cfg = load_config(base)
    for overlay in OVERLAYS:
        tree = yaml.safe_load(overlay.read_text())
        assert list(tree) == ["model"] and list(tree["model"]) == ["generator"], overlay.name
        overlaid = load_config([base, overlay])
        changed = {k for (k, v), (_, w) in zip(leaves(to_dict(cfg)), leaves(to_dict(overlaid)))
                   if v != w}
        assert changed <= {k for k, _ in leaves(tree)}, (overlay.name, changed)
        with torch.device("meta"):
            networks = (build_generator(overlaid), *build_discriminators(overlaid))
        assert all(count_parameters(n) > 0 for n in networks), overlay.name


@pytest.mark.parametrize("dataset", ["market", "deepfashion"])
def test_xingganpp_config_is_xinggan_recipe_plus_extensions(dataset):
    base = to_dict(load_config(REPO / f"configs/{dataset}.yaml"))
    pp = to_dict(load_config(REPO / f"configs/{dataset}_xingganpp.yaml"))
    extension_keys = {("model", "name")} | {
        ("model", "generator", k) for k in ("scales", "enhanced_attention",
                                            "enhanced_attention_scales", "share_projections",
                                            "dense_fusion", "dense_channels")}
    changed = {k for (k, v), (_, w) in zip(leaves(base), leaves(pp)) if v != w}
    assert changed <= extension_keys
    g = pp["model"]["generator"]
    assert pp["model"]["name"] == "xingganpp" and g["scales"] == [1, 2, 4]
    assert g["enhanced_attention"] and g["dense_fusion"] and not g["share_projections"]
    assert g["dense_channels"] == 32


# --------------------------------------------------------------------------------------
# the assembled generator
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["market_xingganpp.yaml", "deepfashion_xingganpp.yaml"])
def test_forward_backward_at_full_resolution_tiny_width(base):
    cfg = load_config(REPO / "configs" / base, TINY)
    torch.manual_seed(0)
    generator = build_generator(cfg)
    shape_d, appearance_d = build_discriminators(cfg)
    h, w = cfg.data.height, cfg.data.width
    image = torch.rand(1, 3, h, w) * 2 - 1
    sp, tp = torch.rand(2, 1, 18, h, w).unbind(0)
    out = generator(image, sp, tp)
    assert out.shape == (1, 3, h, w)
    loss = out.abs().mean() + shape_d(torch.cat([out, tp], 1)).mean() \
        + appearance_d(torch.cat([out, image], 1)).mean()
    loss.backward()
    grads = [p.grad for p in generator.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[:5])
    # the zero-initialised residual scales of the attention receive a gradient (the attention
    # weights themselves only do once a scale is non-zero)
    gamma_grads = [p.grad for n, p in generator.named_parameters() if "gamma" in n]
    assert gamma_grads and all(g is not None and g.abs().sum() > 0 for g in gamma_grads)


def test_dense_fusion_with_zero_dense_weights_is_xinggan_fusion():
    """A dense head that starts from a CAF head's weights (dense rows zero) gives the same image
    as XingGAN's fusion head for the same generator weights."""
    base_cfg = load_config(REPO / "configs" / "market.yaml", TINY)
    dense_cfg = base_cfg.replace("model.generator.dense_fusion=true")
    torch.manual_seed(0)
    base = build_generator(base_cfg).eval()
    dense = build_generator(dense_cfg).eval()
    with torch.no_grad():
        for name, p in base.named_parameters():  # non-zero gammas, so the blocks matter
            if "gamma" in name:
                p.fill_(0.3)
    shared = {k: v for k, v in base.state_dict().items() if not k.startswith("fusion.")}
    result = dense.load_state_dict(shared, strict=False)
    assert all(k.startswith("fusion.") for k in result.missing_keys)
    assert not result.unexpected_keys
    dense.fusion.load_caf_state_dict(base.fusion.state_dict(), zero_dense=True)
    image = torch.rand(2, 3, 128, 64) * 2 - 1
    sp, tp = torch.rand(2, 2, 18, 128, 64).unbind(0)
    with torch.no_grad():
        a = base(image, sp, tp)
        b = dense(image, sp, tp)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # and the dense stack is really read: non-zero dense weights change the fusion maps
    with torch.no_grad():
        dense.fusion.to_maps.weight.normal_(0, 1.0)  # maps far from uniform
        maps_before = dense(image, sp, tp, return_details=True)[1]["maps"]
        for p in dense.fusion.stage_compressions.parameters():
            p.normal_(0, 0.5)
        w = dense.fusion.up1.weight  # ConvTranspose: (in, out, k, k); zeroed rows read the stages
        dense_rows = w.flatten(1).abs().sum(1) == 0
        assert dense_rows.sum() == 2 * 4  # 2 blocks x 4 dense channels
        w[dense_rows] = torch.randn_like(w[dense_rows]) * 0.5
        maps_after = dense(image, sp, tp, return_details=True)[1]["maps"]
    assert (maps_after - maps_before).abs().max() > 1e-3


@pytest.mark.parametrize("base", ["market_xingganpp.yaml", "deepfashion_xingganpp.yaml"])
def test_xingganpp_configs_train_on_toy_data_through_train_py(base, tmp_path):
    """Both XingGAN++ configs train through the same train.py as XingGAN (the DeepFashion one
    at the toy data's 128 x 64, where every scale still divides the 32 x 16 grid)."""
    make_toy_dataset(tmp_path / "toy", seed=4, identities=2, test_identities=1, poses=3,
                     test_pairs=3, height=128, width=64)
    sets = TINY + [
        f"data.root={tmp_path / 'toy'}", "data.height=128", "data.width=64", "data.num_workers=0",
        "data.train_annotations=market-annotation-train.csv",
        "data.test_annotations=market-annotation-test.csv",
        "data.train_pairs=market-pairs-train.csv", "data.test_pairs=market-pairs-test.csv",
        "train.batch_size=2", "train.iterations=2", "train.checkpoint_every=2",
        "train.grid_pairs=1", "loss.lambda_perceptual=0",
    ]
    cmd = [sys.executable, "train.py", "--config", f"configs/{base}", "--run-dir",
           str(tmp_path / "run"), "--no-progress"]
    for item in sets:
        cmd += ["--set", item]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    ckpt = tmp_path / "run" / "checkpoints" / "latest.pt"
    state = load_checkpoint(ckpt)
    assert state["iteration"] == 2 and state["config"]["model"]["name"] == "xingganpp"
    g = load_generator(ckpt)
    assert any(isinstance(m, MultiScaleCrossAttention) for m in g.modules())


# --------------------------------------------------------------------------------------
# scripts/model_table.py
# --------------------------------------------------------------------------------------


def _model_table():
    return load_script("model_table")


TINY_OVERLAY = """# tiny XingGAN for the model-table test
data: {height: 64, width: 32}
model: {generator: {ngf: 8, n_blocks: 2, num_candidates: 2}}
"""


def test_model_table_skips_overlays_that_change_nothing():
    mt = _model_table()
    rows = mt.rows_to_measure([str(REPO / "configs/market.yaml"),
                               str(REPO / "configs/market_xingganpp.yaml")], overlays=True)
    names = [(Path(c).stem, Path(o).stem if o else None) for c, o in rows]
    assert ("market", None) in names and ("market", "no_dense_fusion") not in names
    assert ("market", "blocks_6") in names and ("market_xingganpp", "no_dense_fusion") in names
    assert ("market_xingganpp", "separate_projections") not in names


def test_model_table_counts_parameters_flops_and_memory(tmp_path):
    mt = _model_table()
    overlay = tmp_path / "tiny.yaml"
    overlay.write_text(TINY_OVERLAY)
    no_attention = tmp_path / "tiny_no_attention.yaml"
    no_attention.write_text(TINY_OVERLAY.replace(
        "num_candidates: 2}", "num_candidates: 2, appearance_update: false, shape_update: false}"))
    market = str(REPO / "configs/market.yaml")
    row = mt.measure(market, str(overlay), torch.device("cpu"), memory=False)
    assert "error" not in row, row.get("error")
    cfg = load_config([market, overlay])
    d_shape, d_appearance = build_discriminators(cfg)
    assert row["params"] == {
        "generator": sum(p.numel() for p in build_generator(cfg).parameters()),
        "shape_discriminator": sum(p.numel() for p in d_shape.parameters()),
        "appearance_discriminator": sum(p.numel() for p in d_appearance.parameters())}
    # the CPU memory measurement, in a fresh process as the script runs it (in this process
    # the step can reuse heap pages that earlier tests freed, and show no rise at all)
    memory = mt.cpu_peak_memory(market, str(overlay))
    assert memory["rise_mb"] > 0 and memory["peak_mb"] >= memory["rise_mb"]
    # the attention FLOPs (which the counter must see through SDPA) by hand:
    # per block and direction, 1x1 q, k, v projections and the N x N energy and weighted sum
    without = mt.measure(market, str(no_attention), torch.device("cpu"), memory=False)
    n, c, dq, blocks = (64 // 4) * (32 // 4), 4 * 8, 4 * 8 // 8, 2
    per_direction = 2 * n * c * (dq + dq + c) + 2 * n * n * (dq + c)
    assert round((row["gflops"] - without["gflops"]) * 1e9) == blocks * 2 * per_direction
