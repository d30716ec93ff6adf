"""Half-precision numerics: the discriminator's sigmoid + BCE and the unscaled attention energies.

Float16 autocast is what CUDA runs; PyTorch's CPU autocast accepts float16 too, so these tests
run on any CPU, with the dtype given explicitly (nothing depends on what the host would pick).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from xinggan.losses import GANLoss
from xinggan.models.discriminator import ResnetDiscriminator
from xinggan.models.enhanced_attention import EnhancedAttention
from xinggan.models.multiscale_attention import MultiScaleCrossAttention
from xinggan.ops.attention import dot_product_attention

FP16_MAX = torch.finfo(torch.float16).max  # 65504


# --------------------------------------------------------------------------------------
# Discriminator sigmoid + BCE
# --------------------------------------------------------------------------------------


def saturated_discriminator(head: str, sigmoid: bool = True) -> ResnetDiscriminator:
    """A tiny discriminator whose scores (the sigmoid's input) lie around 9 to 13: confident
    enough that a bfloat16 sigmoid rounds every probability to exactly 1.0."""
    torch.manual_seed(0)
    d = ResnetDiscriminator(in_channels=6, ndf=8, n_blocks=1, norm="batch", dropout=0.0,
                            sigmoid=sigmoid, head=head)
    with torch.no_grad():
        if head == "patch":
            d.head.weight.mul_(0.1)
            d.head.bias.fill_(10.0)
        else:  # released head: the scores are x + norm2(...) of the last residual block
            d.block1.conv_block.norm2.weight.fill_(0.2)
            d.block1.conv_block.norm2.bias.fill_(9.0)
    return d


def last_conv(d: ResnetDiscriminator, head: str) -> nn.Conv2d:
    return d.head if head == "patch" else d.block1.conv_block.conv2


def discriminator_gradients(d, head, images, target_is_real, amp):
    """(scores, d loss / d scores, d loss / d last conv weight) for the BCE GAN loss."""
    d.zero_grad(set_to_none=True)
    scores = []
    sigmoid = d.sigmoid
    hook = sigmoid.register_forward_pre_hook(lambda module, args: scores.append(args[0]))
    try:
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            prediction = d(images)
            scores[0].retain_grad()
            loss = GANLoss("bce")(prediction, target_is_real)
    finally:
        hook.remove()
    loss.backward()
    return scores[0].detach(), scores[0].grad.float(), last_conv(d, head).weight.grad


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("head", ["patch", "features"])
@pytest.mark.parametrize("target_is_real, tol", [(False, 0.02), (True, 0.15)])
def test_saturated_discriminator_gradient_under_bf16_matches_float32(head, target_is_real, tol):
    """Under bfloat16 autocast the scores are bfloat16; a bfloat16 sigmoid makes every
    probability exactly 1.0 and the BCE gradient 0 (fake target: float32 says about 1 per
    score).  The float32 sigmoid keeps the float32 gradients, to the rounding of the bfloat16
    scores (a score near 10 is rounded by up to 1/32, which moves 1 - p by up to 3%: the
    real-target gradient, proportional to 1 - p, is compared more loosely).

    The released head's last conv is followed by a batch norm, which removes the constant part
    of the score gradient; with a fake target what is left (the variation of p, about 1e-5 of
    it) is below the resolution of a bfloat16 score gradient, so only the score gradient is
    compared there (that conv's float32 gradient is a millionth of the patch head's)."""
    d = saturated_discriminator(head).train()
    images = torch.randn(2, 6, 16, 8, generator=torch.Generator().manual_seed(1))
    scores32, grad32, weight32 = discriminator_gradients(d, head, images, target_is_real, None)
    scores16, grad16, weight16 = discriminator_gradients(d, head, images, target_is_real,
                                                         torch.bfloat16)
    assert scores16.dtype == torch.bfloat16
    # the regime of the issue: scores of 8 to 14, every bfloat16 sigmoid of them exactly 1.0
    assert 8 < scores32.min() and scores32.max() < 14
    assert (torch.sigmoid(scores16) == 1).all()
    # float32's own gradient is far from zero: about 1 / numel per score for a fake target
    if not target_is_real:
        assert grad32.mul(grad32.numel()).min() > 0.99
    assert relative_error(grad16, grad32) < tol
    if head == "patch" or target_is_real:
        assert relative_error(weight16, weight32) < tol


@pytest.mark.parametrize("target_is_real", [False, True])
def test_discriminator_sigmoid_under_fp16_autocast_gives_finite_float32_gradients(
        target_is_real):
    """Float16 scores above about 8.3 have a float16 sigmoid of exactly 1.0; BCE's gradient
    1 / max(p (1 - p), 1e-12) then overflows float16 and the score gradient is inf * 0 = NaN.
    The discriminator's sigmoid keeps the gradient of the float32 computation.  The loss is
    scaled by 2^16 as ``GradScaler`` scales it, so that the float16 gradients are normal
    numbers (a real target's are about 1e-7 unscaled)."""
    d = saturated_discriminator("patch")
    scale = 2.0 ** 16
    values = torch.linspace(8.5, 12.0, 64).view(1, 1, 8, 8).half().float()  # float16 values
    scores16 = values.half().requires_grad_()
    with torch.autocast("cpu", dtype=torch.float16):
        (scale * GANLoss("bce")(d.sigmoid(scores16), target_is_real)).backward()
    scores32 = values.clone().requires_grad_()
    # float32 reference from the BCE formula itself: -log(p) or -log(1 - p), mean
    p = torch.sigmoid(scores32)
    (scale * -torch.log(p if target_is_real else 1 - p)).mean().backward()
    assert torch.isfinite(scores16.grad).all()
    assert relative_error(scores16.grad.float(), scores32.grad) < 2e-3


def test_least_squares_discriminator_is_unchanged_under_autocast():
    """DeepFashion's discriminators have no sigmoid: their raw bfloat16 scores go to the
    least-squares loss, which autocast computes in float32, as before."""
    d = saturated_discriminator("patch", sigmoid=False).train()
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())
    images = torch.randn(2, 6, 16, 8, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        prediction = d(images)
        prediction.retain_grad()
        loss = GANLoss("lsgan")(prediction, False)
    assert prediction.dtype == torch.bfloat16  # no cast added on this path
    assert loss.dtype == torch.float32
    expected = prediction.detach().double().pow(2).mean()  # mean (s - 0)^2
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=0)
    loss.backward()
    grad = 2 * prediction.detach().double() / prediction.numel()
    torch.testing.assert_close(prediction.grad.double(), grad, rtol=2 ** -7, atol=0)


# --------------------------------------------------------------------------------------
# Attention energies in float16
# --------------------------------------------------------------------------------------


def large_energy_qkv(n=48, d=8, c=16, b=2, seed=0):
    """q, k with energies of about 76800 (> 65504) plus O(1) parts that make a non-trivial
    softmax: the first channel of every query is 256 and of every key 300, which shifts every
    energy by the same 76800 (the softmax ignores it); the other channels are N(0, 1).  All
    values are float16 numbers, returned in float64 (the exact inputs of both precisions)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, n, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, n, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, n, c, generator=g, dtype=torch.float64)
    q[..., 0], k[..., 0] = 256.0, 300.0
    q, k, v = (t.half().double() for t in (q, k, v))
    assert torch.bmm(q, k.transpose(1, 2)).min() > FP16_MAX
    return q, k, v


def explicit_attention(q, k, v):
    """softmax(q k^T) v written out (float64 in the tests)."""
    energy = torch.einsum("bid,bjd->bij", q, k)
    weights = torch.exp(energy - energy.amax(dim=-1, keepdim=True))
    return torch.einsum("bij,bjc->bic", weights / weights.sum(-1, keepdim=True), v)


def grads_of(fn, inputs, dtype, amp=None):
    """fn's output and the gradients of a fixed weighted sum of it w.r.t. the inputs."""
    leaves = [t.detach().to(dtype).clone().requires_grad_() for t in inputs]
    with torch.autocast("cpu", dtype=amp or torch.float16, enabled=amp is not None):
        out = fn(*leaves)
    weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape)
    (out.double() * weights).sum().backward()
    return [out.detach().double()] + [t.grad.double() for t in leaves]


def errors(got, truth):
    """Largest error of out, dq, dk, dv relative to the largest true value.  dq leaves out the
    shift channel: its true value is exactly 0 (the softmax ignores the shift) and float16
    products leave rounding of about 300 * 2^-11 * |dS| there, in any implementation."""
    out = []
    for name, g, t in zip(("out", "dq", "dk", "dv"), got, truth):
        assert torch.isfinite(g).all(), f"{name} is not finite"
        if name == "dq":
            g, t = g[..., 1:], t[..., 1:]
        out.append(((g - t).abs().max() / t.abs().max()).item())
    return out


def assert_as_close_as_float32(fn, base, truth, **run):
    """fn in float16 is finite and no further from the float64 truth than fn in float32 (to a
    quarter more plus 2e-3): energies of about 76800 have a float32 spacing of 2^-7, so float32
    itself is off by a few 1e-3, and float16 rounding of the products adds a little."""
    got = errors(grads_of(fn, base, **run), truth)
    ref = errors(grads_of(fn, base, torch.float32), truth)
    for name, g, r in zip(("out", "dq", "dk", "dv"), got, ref):
        assert g <= 1.25 * r + 2e-3, (name, g, r)


@pytest.mark.parametrize("impl", ["reference", "chunked"])
@pytest.mark.parametrize("mode", ["float16 tensors", "float16 autocast"])
def test_attention_energies_above_float16_range_stay_finite(impl, mode):
    """Energies of about 76800 overflow a float16 product (inf, then NaN from the softmax);
    formed in float32 they give the float64 result on the same float16 inputs, forward and
    backward (chunk 20: several chunks, one of them short)."""
    base = large_energy_qkv()
    truth = grads_of(explicit_attention, base, torch.float64)

    def run(q, k, v):
        return dot_product_attention(q, k, v, impl, chunk=20)

    if mode == "float16 tensors":
        assert_as_close_as_float32(run, base, truth, dtype=torch.float16)
    else:  # float32 inputs (as convs hand them), float16 autocast
        assert_as_close_as_float32(run, base, truth, dtype=torch.float32, amp=torch.float16)


def enhanced_attention(n: int) -> EnhancedAttention:
    torch.manual_seed(0)
    ea = EnhancedAttention(n, n, dim=8)
    with torch.no_grad():  # a trained-like, non-zero back-projection: the refinement acts
        ea.output_weight.normal_(0, 0.5)
    return ea


def test_enhanced_attention_energies_above_float16_range_stay_finite():
    """Enhanced Attention forms C = Q K^T, the token maps W C and C' explicitly; under float16
    autocast they overflow unless formed in float32.  Compared with the same module in float64
    on the same float16 inputs."""
    base = large_energy_qkv(n=16)
    ea = enhanced_attention(16)
    truth = grads_of(ea.double(), base, torch.float64)
    assert_as_close_as_float32(ea.float(), base, truth, dtype=torch.float32, amp=torch.float16)


@pytest.mark.parametrize("scale, enhanced", [(1, ()), (2, (2,))])
def test_multiscale_attention_under_fp16_autocast_stays_finite(scale, enhanced):
    """Both branches of a multi-scale block (plain windowed attention, Enhanced Attention) on
    projected maps whose energies exceed float16's range."""
    base = large_energy_qkv(n=64, b=1)  # (1, 64, .): an 8 x 8 grid
    torch.manual_seed(0)
    attn = MultiScaleCrossAttention(16, (8, 8), scales=(scale,), qk_reduction=2,
                                    enhanced_scales=enhanced, enhanced_dim=8, impl="chunked")
    for ea in attn.enhanced.values():
        with torch.no_grad():
            ea.output_weight.normal_(0, 0.5)

    def run(q, k, v):  # (1, 64, c) <-> (1, c, 8, 8) maps
        maps = [t.transpose(1, 2).reshape(1, -1, 8, 8) for t in (q, k, v)]
        return attn.attend_at_scale(scale, *maps).flatten(2).transpose(1, 2)

    attn.double()
    truth = grads_of(run, base, torch.float64)
    attn.float()
    assert_as_close_as_float32(run, base, truth, dtype=torch.float32, amp=torch.float16)
