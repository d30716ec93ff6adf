"""Deterministic algorithms: the reflection pad's backward is a deterministic fold, never
``aten::reflection_pad2d_backward`` (which PyTorch refuses to run on CUDA in deterministic mode),
and a whole training step of XingGAN and XingGAN++ runs without that kernel."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from xinggan.config import load_config
from xinggan.models.layers import ReflectPadConv2d
from xinggan.ops.reflection import reflect_pad, reflection_pad2d_fold
from xinggan.training import Trainer

from helpers import tiny_training_overrides

REPO = Path(__file__).resolve().parents[1]
PAD_BACKWARD = torch.ops.aten.reflection_pad2d_backward.default

# The XingGAN++ parts on top of configs/toy.yaml (the switches of configs/*_xingganpp.yaml):
# windowed attention at two scales, Enhanced Attention on both, separate SA / AS modules and
# the dense fusion head.
XINGGANPP = {"model.generator.scales": "[1,2]", "model.generator.enhanced_attention": "true",
             "model.generator.enhanced_attention_scales": "[]",
             "model.generator.enhanced_attention_dim": 8,
             "model.generator.share_projections": "false", "model.generator.dense_fusion": "true",
             "model.generator.dense_channels": 4}


@contextlib.contextmanager
def deterministic(flag: bool):
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(flag)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


class PadBackwardCalls(TorchDispatchMode):
    """Counts the calls of ``aten::reflection_pad2d_backward`` (and lets them run)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is PAD_BACKWARD:
            self.calls += 1
        return func(*args, **(kwargs or {}))


# -- the fold equals PyTorch's kernel --------------------------------------------------------

SIZES = [(5, 7), (6, 4), (2, 2), (3, 8), (9, 9)]


def pads_for(h: int, w: int) -> list[tuple[int, int, int, int]]:
    """(left, right, top, bottom): 1, 3, asymmetric, zero on some sides, and size - 1."""
    pads = {(1, 1, 1, 1), (3, 3, 3, 3), (0, 2, 1, 0), (2, 0, 0, 1),
            (w - 1, w - 1, h - 1, h - 1), (1, w - 1, h - 1, 0)}
    return sorted(p for p in pads if max(p[:2]) < w and max(p[2:]) < h)


CASES = [(h, w, p) for h, w in SIZES for p in pads_for(h, w)]


@pytest.mark.parametrize("h,w,pad", CASES)
def test_fold_equals_pytorch_kernel_exactly_on_integer_gradients(h, w, pad):
    # integer-valued float32 gradients: every sum is exact whatever the order of the additions
    g = torch.Generator().manual_seed(h * 100 + w)
    x = torch.randn(2, 3, h, w, generator=g)
    grad = torch.randint(-50, 51, (2, 3, h + pad[2] + pad[3], w + pad[0] + pad[1]),
                         generator=g).float()
    expected = torch.ops.aten.reflection_pad2d_backward(grad, x, list(pad))
    got = reflection_pad2d_fold(grad, pad)
    assert got.shape == x.shape
    assert torch.equal(got, expected)


@pytest.mark.parametrize("h,w,pad", [(5, 7, (3, 1, 2, 4)), (6, 4, (3, 3, 5, 5)),
                                     (8, 8, (3, 3, 3, 3))])
def test_fold_equals_pytorch_kernel_on_random_float64_and_3d_input(h, w, pad):
    g = torch.Generator().manual_seed(7)
    shape = (h + pad[2] + pad[3], w + pad[0] + pad[1])
    for lead in ((2, 4), (3,)):  # (N, C, H, W) and (C, H, W)
        x = torch.randn(*lead, h, w, generator=g, dtype=torch.float64)
        grad = torch.randn(*lead, *shape, generator=g, dtype=torch.float64)
        expected = torch.ops.aten.reflection_pad2d_backward(grad, x, list(pad))
        torch.testing.assert_close(reflection_pad2d_fold(grad, pad), expected,
                                   rtol=1e-12, atol=1e-12)


def test_fold_refuses_a_pad_as_large_as_the_input():
    with pytest.raises(ValueError, match="smaller than the input"):
        reflection_pad2d_fold(torch.zeros(1, 1, 9, 5), 2)  # 5 x 1 input, pad 2 on the columns


# -- the deterministic path is taken, on CPU too ----------------------------------------------


@pytest.mark.parametrize("flag", [False, True])
def test_reflect_pad_gives_the_gradients_of_f_pad(flag):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 6, 5, generator=g)
    weights = torch.randn(2, 3, 6 + 1 + 4, 5 + 2 + 3, generator=g)
    pad = (2, 3, 1, 4)
    xr = x.clone().requires_grad_()
    (F.pad(xr, pad, mode="reflect") * weights).sum().backward()  # reference: PyTorch's backward
    xi = x.clone().requires_grad_()
    with deterministic(flag), PadBackwardCalls() as calls:
        out = reflect_pad(xi, pad)
        (out * weights).sum().backward()
    assert torch.equal(out.detach(), F.pad(x, pad, mode="reflect"))
    torch.testing.assert_close(xi.grad, xr.grad, rtol=1e-6, atol=1e-6)
    assert calls.calls == (0 if flag else 1)  # the fold when deterministic, else the kernel


@pytest.mark.parametrize("k,pad,stride", [(3, 1, 1), (7, 3, 1), (3, 1, 2)])
def test_reflect_pad_conv_under_deterministic_algorithms_never_calls_the_kernel(k, pad, stride):
    torch.manual_seed(0)
    conv = ReflectPadConv2d(4, 5, k, pad, stride=stride)
    plain = nn.Conv2d(4, 5, k, stride=stride)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 4, 11, 9)
    out_shape = (2, 5, (11 + stride - 1) // stride, (9 + stride - 1) // stride)
    weights = torch.randn(out_shape)
    xr = x.clone().requires_grad_()  # reference: the released pad + conv, PyTorch's backward
    (plain(nn.ReflectionPad2d(pad)(xr)) * weights).sum().backward()
    xi = x.clone().requires_grad_()
    with deterministic(True), PadBackwardCalls() as calls:
        (conv(xi) * weights).sum().backward()
    assert calls.calls == 0
    torch.testing.assert_close(xi.grad, xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, plain.weight.grad, rtol=1e-5, atol=1e-5)


# -- one whole training step -----------------------------------------------------------------


def toy_overrides(root: Path, xingganpp: bool, deterministic: bool = True) -> list[str]:
    """One iteration of the tiny toy setup, dropout on in G and both Ds."""
    return tiny_training_overrides(root, **{
        "train.iterations": 1, "train.checkpoint_every": 1,
        "train.deterministic": str(deterministic).lower(),
        "model.generator.dropout": 0.5, "model.discriminator.dropout": 0.5,
        **(XINGGANPP if xingganpp else {})})


def test_training_step_uses_the_kernel_only_outside_deterministic_mode(tiny_data, tmp_path):
    """Deterministic mode off: PyTorch's fast kernel, as before; on: never."""
    calls = {}
    for flag in (False, True):
        cfg = load_config(REPO / "configs" / "toy.yaml", toy_overrides(tiny_data, False, flag))
        torch.manual_seed(0)
        with deterministic(flag), PadBackwardCalls() as counter:
            trainer = Trainer(cfg, tmp_path / f"run-{flag}", progress=False, tensorboard=False)
            trainer.fit(max_iterations=1)
        assert trainer.iteration == 1
        calls[flag] = counter.calls
    assert calls[False] > 0 and calls[True] == 0, calls


# Run in a child process: the kernel registered over PyTorch's CPU kernel stays there for the
# life of the process.
STEP_WITH_KERNEL_REFUSED = r"""
import json, sys
import torch
import torch.nn.functional as F

lib = torch.library.Library("aten", "IMPL")
def refuse(*args, **kwargs):
    raise RuntimeError("aten::reflection_pad2d_backward was called")
lib.impl("reflection_pad2d_backward", refuse, "CPU")

x = torch.randn(1, 1, 4, 4, requires_grad=True)  # the replacement is in place
try:
    F.pad(x, (1, 1, 1, 1), mode="reflect").sum().backward()
    sys.exit("the replacement kernel was not called")
except RuntimeError as exc:
    assert "was called" in str(exc), exc

from xinggan.config import load_config
from xinggan.training import Trainer

config, overrides, run_dir = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
trainer = Trainer(load_config(config, overrides), run_dir, progress=False, tensorboard=False)
result = trainer.fit(max_iterations=1)
assert trainer.iteration == 1, trainer.iteration
print("STEP-DONE", trainer.cfg.model.name, result)
"""


@pytest.mark.parametrize("xingganpp", [False, True], ids=["xinggan", "xingganpp"])
def test_deterministic_training_step_without_the_pad_backward_kernel(tiny_data, tmp_path,
                                                                      xingganpp):
    overrides = toy_overrides(tiny_data, xingganpp)
    run = subprocess.run(
        [sys.executable, "-c", STEP_WITH_KERNEL_REFUSED, str(REPO / "configs" / "toy.yaml"),
         json.dumps(overrides), str(tmp_path / "run")],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    name = "xingganpp" if xingganpp else "xinggan"
    assert f"STEP-DONE {name}" in run.stdout
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()
