"""The lean layers: the released ReflectionPad2d + Conv2d and ReLU + Dropout pairs as single
modules that give the same results and keep less for backward."""
from __future__ import annotations

import gc
import weakref
from collections import Counter

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from xinggan.models.layers import ReflectPadConv2d, ReLUDropout

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def pair(conv: ReflectPadConv2d) -> nn.Sequential:
    """The two released layers holding the same weights."""
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      bias=conv.bias is not None)
    plain.load_state_dict(conv.state_dict())
    return nn.Sequential(nn.ReflectionPad2d(conv.reflect_pad), plain)


class Ops(TorchDispatchMode):
    """Counts the ops by name (with the shape of their first argument) and keeps weak references
    to the outputs of the reflection pads."""

    def __init__(self):
        super().__init__()
        self.seen, self.pads = Counter(), []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        self.seen[(name, tuple(args[0].shape))] += 1
        if name == "reflection_pad2d":
            self.pads.append(weakref.ref(out))
        return out


def outputs_and_grads(net, x, params, amp: bool):
    xi = x.clone().requires_grad_()
    with torch.autocast(**BF16, enabled=amp):
        out = net(xi)
    (out.float() * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
    return out, [out.detach().float(), xi.grad, *(p.grad for p in params)]


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("cin,cout,k,pad,stride,bias", [
    (5, 7, 3, 1, 1, True), (4, 6, 7, 3, 1, False), (6, 3, 3, 1, 2, True)])
def test_same_output_and_gradients_as_pad_then_conv(cin, cout, k, pad, stride, bias, amp):
    """Float32 and CPU bf16 autocast: the same kernels as the released pair, so equal results
    (under autocast the input is cast before the pad instead of after: the same values)."""
    torch.manual_seed(0)
    conv = ReflectPadConv2d(cin, cout, k, pad, stride=stride, bias=bias)
    ref = pair(conv)
    x = torch.randn(2, cin, 11, 9)
    out, lean = outputs_and_grads(conv, x, list(conv.parameters()), amp)
    out_ref, released = outputs_and_grads(ref, x, list(ref[1].parameters()), amp)
    assert out.dtype == out_ref.dtype == (torch.bfloat16 if amp else torch.float32)
    assert len(lean) == len(released) == (4 if bias else 3)
    for a, b in zip(lean, released):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    with torch.no_grad(), torch.autocast(**BF16, enabled=amp):  # the inference path too
        torch.testing.assert_close(conv(x), ref(x), rtol=0, atol=0)


def test_backward_keeps_the_unpadded_input_only():
    """The padded copy of x is freed after the forward (the released pair keeps it), and the
    backward pads x again."""
    conv = ReflectPadConv2d(4, 4, 3, 1)
    x = torch.randn(1, 4, 10, 8, requires_grad=True)
    for net, kept in ((conv, False), (pair(conv), True)):
        spy = Ops()
        with spy:
            out = net(x)
        gc.collect()
        assert len(spy.pads) == 1 and (spy.pads[0]() is not None) is kept
        spy = Ops()
        with spy:
            out.sum().backward()
        assert spy.seen[("reflection_pad2d", (1, 4, 10, 8))] == (0 if kept else 1)


def test_weights_are_cast_once_per_autocast_region():
    """A discriminator step calls each conv twice (real, fake) in one autocast region: its
    float32 weight is cast to bf16 once (autocast's weight cache), not once per call."""
    torch.manual_seed(0)
    conv = ReflectPadConv2d(4, 6, 3, 1)
    x = torch.randn(2, 4, 10, 8)
    spy = Ops()
    with spy, torch.autocast(**BF16):
        loss = conv(x).float().sum() + conv(x * 2).float().sum()
    assert spy.seen[("_to_copy", (6, 4, 3, 3))] == 1
    assert spy.seen[("_to_copy", (2, 4, 12, 10))] == 2  # the padded inputs, once per call
    spy = Ops()
    with spy:
        loss.backward()
    assert spy.seen[("_to_copy", (6, 4, 3, 3))] == 1  # the summed gradient back to float32


def test_input_without_grad_and_frozen_weights():
    conv = ReflectPadConv2d(3, 4, 3, 1)
    x = torch.randn(1, 3, 6, 6)
    conv(x).sum().backward()  # first layer of a network: no input gradient wanted
    assert conv.weight.grad is not None
    conv.weight.requires_grad_(False)
    conv.bias.requires_grad_(False)
    xi = x.clone().requires_grad_()
    conv(xi).sum().backward()
    assert xi.grad is not None


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_relu_dropout_equals_relu_then_dropout(p):
    """Same random stream as nn.Dropout on CPU: equal outputs and input gradients."""
    x = torch.randn(3, 6, 9, 7)
    weights = torch.randn(3, 6, 9, 7)
    results = []
    for net in (ReLUDropout(p), nn.Sequential(nn.ReLU(), nn.Dropout(p))):
        net.train()
        xi = x.clone().requires_grad_()
        torch.manual_seed(7)
        out = net(xi)
        (out * weights).sum().backward()
        results.append((out.detach(), xi.grad))
    assert (results[0][0] == 0).float().mean() > p / 2  # dropout did drop units
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_relu_dropout_keeps_bf16_under_autocast():
    """Fed the bf16 output of an autocast convolution, the fused layer stays in bf16 (no
    float32 round trip) and equals ReLU + Dropout drawn from the same random numbers."""
    x = torch.randn(2, 4, 9, 7).to(torch.bfloat16)
    results = []
    for net in (ReLUDropout(0.5), nn.Sequential(nn.ReLU(), nn.Dropout(0.5))):
        xi = x.clone().requires_grad_()
        torch.manual_seed(3)
        with torch.autocast(**BF16):
            out = net.train()(xi)
        (out.float() * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        assert out.dtype == xi.grad.dtype == torch.bfloat16
        results.append((out.float(), xi.grad.float()))
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_relu_dropout_keeps_only_its_output():
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    for net, expected in ((ReLUDropout(0.5), 1), (nn.Sequential(nn.ReLU(), nn.Dropout(0.5)), 2)):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t,
                                                      lambda t: t):
            out = net(x * 1)
        ptrs = {t.untyped_storage().data_ptr() for t in saved if t.dim() == 4}
        assert len(ptrs) == expected  # released pair: the ReLU output and the noise
        if expected == 1:
            assert ptrs == {out.untyped_storage().data_ptr()}


def test_relu_dropout_in_eval_and_without_dropout():
    x = torch.randn(2, 3, 4, 4)
    net = ReLUDropout(0.5).eval()
    assert torch.equal(net(x), torch.relu(x))
    assert torch.equal(ReLUDropout(0.0).train()(x), torch.relu(x))
    with pytest.raises(ValueError, match="dropout probability"):
        ReLUDropout(1.0)
