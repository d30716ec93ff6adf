"""The bfloat16 paths: precision choice, and each hand-written kernel under CPU bf16 autocast.

Under ``torch.autocast("cpu", torch.bfloat16)`` every custom autograd function must compute as
autocast computes the reference path (products in bfloat16, softmax in float32), with no
silent float32 fallback of a convolution or product on the hot path.
"""
from __future__ import annotations

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
from xinggan.ops.attention import ChunkedAttention, dot_product_attention
from xinggan.models.layers import ReflectPadConv2d, ReLUDropout

REPO = Path(__file__).resolve().parents[1]
BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


# -- resolve_amp -----------------------------------------------------------------------


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


# -- chunked attention -------------------------------------------------------------------


def qkv(n: int = 300, d: int = 16, c: int = 48, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, n, w, generator=g) * s for w, s in ((d, 0.5), (d, 0.5), (c, 1.0))]


def run_attention(impl: str, base, chunk: int):
    q, k, v = (t.clone().requires_grad_() for t in base)
    with torch.autocast(**BF16):
        out = dot_product_attention(q, k, v, impl, chunk=chunk)
    weights = torch.linspace(-1, 1, out.numel()).view(out.shape)
    (out.float() * weights).sum().backward()
    return out, [out.detach().float(), q.grad, k.grad, v.grad]


@pytest.mark.parametrize("chunk", [64, 1024])  # several query chunks, and one block
def test_chunked_attention_matches_reference_under_bf16_autocast(chunk):
    base = qkv()
    out_c, chunked = run_attention("chunked", base, chunk)
    out_r, ref = run_attention("reference", base, chunk)
    assert out_c.dtype == out_r.dtype == torch.bfloat16
    for name, a, b in zip(("out", "dq", "dk", "dv"), chunked, ref):
        assert a.dtype == b.dtype, name
        # bf16 tolerance: 8 bits of mantissa, relative to the tensor's scale
        scale = b.abs().max()
        assert (a - b).abs().max() <= 2e-2 * scale, (name, float((a - b).abs().max()), float(scale))


def test_chunked_attention_keeps_its_softmax_in_float32():
    """What the function saves for backward under autocast: q, k, v in bfloat16 and the
    log-sum-exp of each query row in float32 (the softmax statistic, never rounded to bf16)."""
    q, k, v = (t.clone().requires_grad_() for t in qkv(n=200))
    saved = []

    def pack(t):
        saved.append((tuple(t.shape), t.dtype))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast(**BF16):
        out = dot_product_attention(q, k, v, "chunked", chunk=64)
    assert out.dtype == torch.bfloat16
    assert ((2, 200, 1), torch.float32) in saved  # the log-sum-exp
    assert ((2, 200, 16), torch.bfloat16) in saved and ((2, 200, 48), torch.bfloat16) in saved
    assert not any(shape[-1] == shape[-2] == 200 for shape, _ in saved)  # no N x N map kept

    # and the softmax itself: the chunk's energies reach exp/logsumexp as float32
    seen = Counter()

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.__name__.startswith(("_softmax", "logsumexp")):
                seen[(func.__name__.split(".")[0], args[0].dtype)] += 1
            return func(*args, **(kwargs or {}))

    q2, k2, v2 = (t.detach().to(torch.bfloat16) for t in (q, k, v))
    with Spy():
        ChunkedAttention.apply(q2.requires_grad_(), k2, v2, 64)
    assert seen[("_softmax", torch.float32)] == 4 and seen[("logsumexp", torch.float32)] == 4
    assert not any(dt == torch.bfloat16 for _, dt in seen)


# -- lean layers ------------------------------------------------------------------------


def released_pair(conv: ReflectPadConv2d) -> nn.Sequential:
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      bias=conv.bias is not None)
    plain.load_state_dict(conv.state_dict())
    return nn.Sequential(nn.ReflectionPad2d(conv.reflect_pad), plain)


@pytest.mark.parametrize("k,pad,stride,bias", [(3, 1, 1, True), (7, 3, 1, False), (3, 1, 2, True)])
def test_reflect_pad_conv_matches_pad_then_conv_under_bf16_autocast(k, pad, stride, bias):
    torch.manual_seed(0)
    conv = ReflectPadConv2d(6, 5, k, pad, stride=stride, bias=bias)
    ref = released_pair(conv)
    x = torch.randn(2, 6, 14, 10)
    results = []
    for net, weight in ((conv, conv.weight), (ref, ref[1].weight)):
        xi = x.clone().requires_grad_()
        with torch.autocast(**BF16):
            out = net(xi)
        assert out.dtype == torch.bfloat16  # the convolution ran in bf16, as autocast runs it
        (out.float() * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        results.append((out.detach().float(), xi.grad, weight.grad))
        assert xi.grad.dtype == weight.grad.dtype == torch.float32
    for a, b in zip(*results):
        assert (a - b).abs().max() <= 2e-2 * b.abs().max()


def test_relu_dropout_keeps_bf16_and_matches_relu_then_dropout():
    """Fed the bf16 output of an autocast convolution, the fused layer stays in bf16 (no
    float32 round trip) and equals ReLU + Dropout drawn from the same random numbers."""
    x = torch.randn(2, 4, 9, 7).to(torch.bfloat16)
    results = []
    for net in (ReLUDropout(0.5), nn.Sequential(nn.ReLU(), nn.Dropout(0.5))):
        net.train()
        xi = x.clone().requires_grad_()
        torch.manual_seed(3)
        with torch.autocast(**BF16):
            out = net(xi)
        assert out.dtype == torch.bfloat16
        (out.float() * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        assert xi.grad.dtype == torch.bfloat16
        results.append((out.float(), xi.grad.float()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- whole generators: no float32 fallback of a product ----------------------------------


class ProductDtypes(TorchDispatchMode):
    """Counts the dtype of every convolution and matrix product, forward and backward."""

    OPS = ("convolution", "convolution_backward", "bmm", "baddbmm", "mm", "addmm")

    def __init__(self):
        super().__init__()
        self.seen = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in self.OPS:
            self.seen[(name, args[0].dtype)] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("config,extra", [
    ("configs/toy.yaml", []),
    ("configs/deepfashion.yaml", ["model.generator.n_blocks=2"]),
    ("configs/market_xingganpp.yaml", []),
])
def test_every_product_of_the_generator_runs_in_bf16(config, extra):
    from xinggan.models import build_generator

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
    fallbacks = {k: n for k, n in spy.seen.items() if k[1] != torch.bfloat16}
    assert not fallbacks, fallbacks
    assert spy.seen[("convolution", torch.bfloat16)] > 0 and spy.seen[("bmm", torch.bfloat16)] > 0


# -- test.py: eval.amp -------------------------------------------------------------------


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


# -- XingGAN++ enhanced attention --------------------------------------------------------


def test_enhanced_attention_softmax_runs_in_float32_under_cpu_autocast():
    from xinggan.models.enhanced_attention import EnhancedAttention

    torch.manual_seed(0)
    ea = EnhancedAttention(num_queries=16, num_keys=16, dim=8)
    q, k, v = torch.randn(3, 16, 8), torch.randn(3, 16, 8), torch.randn(3, 16, 12)
    seen = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.__name__.startswith("_softmax") and tuple(args[0].shape) == (3, 16, 16):
                seen.append(out.dtype)
            return out

    with Spy(), torch.autocast(**BF16):
        out = ea(q, k, v)
    assert out.dtype == torch.bfloat16 and seen  # the products ran in bf16
    assert set(seen) == {torch.float32}
