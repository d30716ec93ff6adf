"""Half precision: the precision choice, and the numerics of bf16 / fp16 autocast.

The discriminator's sigmoid + BCE, the unscaled attention energies (formed in float32 under
half precision), every product of a generator under bf16, and ``test.py``'s ``eval.amp``.
PyTorch's CPU autocast accepts both half types, so all of it runs on any CPU.
"""
from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from xinggan import precision
from xinggan.config import load_config
from xinggan.losses import GANLoss
from xinggan.models import build_generator
from xinggan.models.discriminator import ResnetDiscriminator
from xinggan.models.enhanced_attention import EnhancedAttention
from xinggan.models.multiscale_attention import MultiScaleCrossAttention
from xinggan.ops.attention import dot_product_attention

REPO = Path(__file__).resolve().parents[1]
BF16 = dict(device_type="cpu", dtype=torch.bfloat16)
FP16_MAX = torch.finfo(torch.float16).max  # 65504


# --------------------------------------------------------------------------------------
# The precision choice
# --------------------------------------------------------------------------------------


def fake_cpu(monkeypatch, flags: tuple, onednn: bool) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda *a: flags)
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: onednn)


@pytest.mark.parametrize("flags", [("amx_bf16",), ("avx512_bf16",), ("amx_bf16", "avx512_bf16")])
def test_auto_picks_bf16_on_a_cpu_with_native_bf16(monkeypatch, flags):
    fake_cpu(monkeypatch, flags, onednn=True)
    dtype, line = precision.resolve_amp("auto", "cpu")
    assert dtype is torch.bfloat16
    assert "bfloat16" in line and flags[0] in line and "\n" not in line


@pytest.mark.parametrize("flags,onednn", [((), True), ((), False), (("avx512_bf16",), False)])
def test_auto_stays_float32_without_native_bf16(monkeypatch, flags, onednn):
    fake_cpu(monkeypatch, flags, onednn)
    dtype, line = precision.resolve_amp("auto", "cpu")
    assert dtype is None and "float32" in line and "\n" not in line


def test_explicit_choices_on_cpu(monkeypatch):
    fake_cpu(monkeypatch, (), onednn=False)
    assert precision.resolve_amp("off", "cpu")[0] is None
    dtype, line = precision.resolve_amp("bf16", "cpu")  # honoured, with a warning in the line
    assert dtype is torch.bfloat16 and "emulated" in line
    fake_cpu(monkeypatch, ("amx_bf16",), onednn=True)
    dtype, line = precision.resolve_amp("bf16", "cpu")
    assert dtype is torch.bfloat16 and "emulated" not in line
    with pytest.raises(precision.PrecisionError, match="fp16 needs a CUDA device"):
        precision.resolve_amp("fp16", "cpu")
    with pytest.raises(precision.PrecisionError, match="one of off, bf16, fp16, auto"):
        precision.resolve_amp("fp8", "cpu")


@pytest.mark.parametrize("available,supported", [(True, True), (True, False), (False, True)])
def test_cuda_choices_follow_gpu_bf16_support(monkeypatch, available, supported):
    """On CUDA bf16 is native only on an available GPU that reports bf16 support. Then ``auto``
    picks bfloat16 and ``bf16`` is honoured; otherwise ``auto`` stays on float32 and ``bf16``
    is refused (no emulation on a GPU). ``fp16`` does not depend on it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    asked = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: asked.append(including_emulation) or supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "a GPU")
    native = available and supported
    ok, evidence = precision.native_bf16("cuda")
    assert ok is native
    # emulated bf16 (pre-Ampere GPUs) does not count as native
    assert set(asked) <= {False} and bool(asked) is available
    assert ("a GPU" in evidence) is available and ("no CUDA" in evidence) is (not available)
    dtype, line = precision.resolve_amp("auto", "cuda")
    if native:
        assert dtype is torch.bfloat16 and "bfloat16" in line
        dtype, line = precision.resolve_amp("bf16", "cuda")
        assert dtype is torch.bfloat16 and "emulated" not in line
    else:
        assert dtype is None and "float32" in line
        with pytest.raises(precision.PrecisionError, match="not supported by this GPU"):
            precision.resolve_amp("bf16", "cuda")
    assert precision.resolve_amp("fp16", "cuda")[0] is torch.float16


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
                    "\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert precision.cpu_bf16_flags(info) == ("amx_bf16", "avx512_bf16")
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx avx2 fma\n")
    assert precision.cpu_bf16_flags(info) == ()
    assert precision.cpu_bf16_flags(tmp_path / "absent") == ()


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


# --------------------------------------------------------------------------------------
# Attention energies in bfloat16
# --------------------------------------------------------------------------------------


def spread_qkv(spread: float, n: int = 64, d: int = 8, c: int = 16):
    """Float64 q, k, v whose energies q . k have a standard deviation of about ``spread``."""
    g = torch.Generator().manual_seed(0)
    s = math.sqrt(spread / math.sqrt(d))
    return [torch.randn(2, n, w, generator=g, dtype=torch.float64) * sc
            for w, sc in ((d, s), (d, s), (c, 1.0))]


def relative_errors(got, truth):
    return [((g - t).norm() / t.norm()).item() for g, t in zip(got, truth)]


@pytest.mark.parametrize("spread", [1.4, 23, 90])
def test_bf16_attention_is_as_accurate_as_sdpa(spread):
    """Under bf16 autocast, against float64: the reference and chunked kernels and Enhanced
    Attention (zero back-projection, so the same function) are within 1.15x of SDPA's error
    (SDPA keeps float32 scores), their gradients within 1.3x.  Energies rounded to bf16 would
    give about 2x at spreads of 20 and more."""
    base = spread_qkv(spread)
    ea = EnhancedAttention(64, 64, dim=8)

    def attention(impl):
        return lambda q, k, v: dot_product_attention(q, k, v, impl, chunk=24)

    truth = grads_of(attention("reference"), base, torch.float64)
    sdpa = relative_errors(grads_of(attention("sdpa"), base, torch.float32, torch.bfloat16),
                           truth)
    for name, fn in (("reference", attention("reference")), ("chunked", attention("chunked")),
                     ("enhanced", lambda q, k, v: ea.to(q.dtype)(q, k, v))):
        got = relative_errors(grads_of(fn, base, torch.float32, torch.bfloat16), truth)
        assert got[0] <= 1.15 * sdpa[0], (name, got[0], sdpa[0])
        for what, g, r in zip(("dq", "dk", "dv"), got[1:], sdpa[1:]):
            assert g <= 1.3 * r, (name, what, g, r)


def test_chunked_attention_keeps_its_softmax_statistic_in_float32():
    """Saved for backward under bf16 autocast: q, k, v in bfloat16 and the log-sum-exp of each
    query row in float32; no N x N map."""
    q, k, v = (t.float().requires_grad_() for t in spread_qkv(1.4, n=200, c=48))
    saved = []

    def pack(t):
        saved.append((tuple(t.shape), t.dtype))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast(**BF16):
        out = dot_product_attention(q, k, v, "chunked", chunk=64)
    assert out.dtype == torch.bfloat16
    assert ((2, 200, 1), torch.float32) in saved  # the log-sum-exp
    assert ((2, 200, 8), torch.bfloat16) in saved and ((2, 200, 48), torch.bfloat16) in saved
    assert not any(shape[-1] == shape[-2] == 200 for shape, _ in saved)


# --------------------------------------------------------------------------------------
# Whole generators under bf16
# --------------------------------------------------------------------------------------


def bf16_valued(t: torch.Tensor) -> bool:
    return bool((t.to(torch.bfloat16).to(t.dtype) == t).all())


class ProductDtypes(TorchDispatchMode):
    """Counts the dtype of every convolution and matrix product, forward and backward; a
    float32 product whose two factors hold bf16 values counts as "widened"."""

    OPS = ("convolution", "convolution_backward", "bmm", "baddbmm", "mm", "addmm")

    def __init__(self):
        super().__init__()
        self.seen = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in self.OPS:
            dtype = args[-1].dtype if name == "baddbmm" else args[0].dtype
            factors = args[-2:] if name == "baddbmm" else args[:2]
            if dtype == torch.float32 and all(map(bf16_valued, factors)):
                dtype = "widened"
            self.seen[(name, dtype)] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("config,extra", [
    ("configs/toy.yaml", []),
    ("configs/deepfashion.yaml", ["model.generator.n_blocks=2"]),
    ("configs/market_xingganpp.yaml", ["model.generator.enhanced_attention=false"]),
])
def test_every_product_of_the_generator_runs_in_bf16(config, extra):
    """No convolution or linear product falls back to float32; the float32 matrix products
    are the attention energies, formed from bf16-rounded queries and keys."""
    cfg = load_config(REPO / config, ["data.height=32", "data.width=16", "model.generator.ngf=8",
                                      *extra])
    torch.manual_seed(0)
    generator = build_generator(cfg).train()
    x, pose = torch.rand(2, 3, 32, 16) * 2 - 1, torch.rand(2, 18, 32, 16)
    spy = ProductDtypes()
    with spy:
        with torch.autocast(**BF16):
            out = generator(x, pose, pose)
        out.float().abs().mean().backward()
    assert torch.isfinite(out).all()
    fallbacks = {k: n for k, n in spy.seen.items() if k[1] not in (torch.bfloat16, "widened")}
    assert not fallbacks, fallbacks
    assert spy.seen[("convolution", torch.bfloat16)] > 0 and spy.seen[("bmm", torch.bfloat16)] > 0
    assert spy.seen[("bmm", "widened")] > 0  # the energies


# --------------------------------------------------------------------------------------
# test.py: eval.amp
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from xinggan.prep.toy import make_toy_dataset
    from xinggan.training import Trainer

    root = tmp_path_factory.mktemp("bf16_testpy")
    make_toy_dataset(root / "data", seed=2, identities=2, test_identities=1, poses=3,
                     test_pairs=3, height=32, width=16)
    cfg = load_config(REPO / "configs" / "toy.yaml", [
        f"data.root={root / 'data'}", "data.num_workers=0", "data.height=32", "data.width=16",
        "model.generator.ngf=4", "model.generator.n_blocks=1", "model.generator.num_candidates=2",
        "model.discriminator.ndf=4", "train.batch_size=2", "train.iterations=1",
        "train.checkpoint_every=1", "eval.batch_size=4"])
    trainer = Trainer(cfg, root / "run", device=torch.device("cpu"), progress=False,
                      tensorboard=False)  # on the CPU whether or not CUDA is present
    trainer.fit()
    return root, trainer.checkpoint_path


def run_test_py(ckpt, out, *sets):
    cmd = [sys.executable, "test.py", "--checkpoint", str(ckpt), "--out", str(out),
           "--device", "cpu", "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_test_py_eval_amp_bf16_generates_and_says_so(tiny_checkpoint, tmp_path):
    root, ckpt = tiny_checkpoint
    fp32 = run_test_py(ckpt, tmp_path / "fp32")
    bf16 = run_test_py(ckpt, tmp_path / "bf16", "eval.amp=bf16")
    assert fp32.returncode == 0 and bf16.returncode == 0, bf16.stderr[-2000:]
    assert "eval.amp=off: precision: float32" in fp32.stdout
    assert "eval.amp=bf16: precision: bfloat16 autocast on cpu" in bf16.stdout
    names = sorted(p.name for p in (tmp_path / "fp32" / "images").iterdir())
    assert names and names == sorted(p.name for p in (tmp_path / "bf16" / "images").iterdir())


def test_test_py_refuses_fp16_on_cpu_in_one_line(tiny_checkpoint, tmp_path):
    _, ckpt = tiny_checkpoint
    run = run_test_py(ckpt, tmp_path / "fp16", "eval.amp=fp16")
    assert run.returncode == 1
    assert run.stderr.strip() == ("error: amp fp16 needs a CUDA device (running on cpu); "
                                  "use bf16, auto or off")
    assert not (tmp_path / "fp16" / "images").exists()


def test_eval_amp_is_a_checked_config_key():
    from xinggan.config import ConfigError

    assert load_config(REPO / "configs/market.yaml").eval.amp == "off"  # scoring stays fp32
    assert load_config(REPO / "configs/market.yaml", ["eval.amp=auto"]).eval.amp == "auto"
    with pytest.raises(ConfigError, match="eval.amp"):
        load_config(REPO / "configs/market.yaml", ["eval.amp=half"])
