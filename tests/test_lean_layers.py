"""The lean layers: the released ReflectionPad2d + Conv2d and ReLU + Dropout pairs as single
modules that give the same results and keep less for backward."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from xinggan.models.layers import ReflectPadConv2d, ReLUDropout


def pair(conv: ReflectPadConv2d) -> nn.Sequential:
    """The two released layers holding the same weights."""
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      bias=conv.bias is not None)
    plain.load_state_dict(conv.state_dict())
    return nn.Sequential(nn.ReflectionPad2d(conv.reflect_pad), plain)


@pytest.mark.parametrize("cin,cout,k,pad,stride,bias", [
    (5, 7, 3, 1, 1, True), (4, 6, 7, 3, 1, True), (6, 3, 3, 1, 2, False)])
def test_same_output_and_gradients_as_pad_then_conv(cin, cout, k, pad, stride, bias):
    torch.manual_seed(0)
    conv = ReflectPadConv2d(cin, cout, k, pad, stride=stride, bias=bias)
    ref = pair(conv)
    x = torch.randn(2, cin, 11, 9)
    weights = torch.randn(2, cout, (11 + stride - 1) // stride, (9 + stride - 1) // stride)
    grads = []
    for net in (conv, ref):
        xi = x.clone().requires_grad_()
        out = net(xi)
        (out * weights).sum().backward()
        params = [p.grad for p in net.parameters()]
        grads.append((out.detach(), xi.grad, *params))
    assert len(grads[0]) == len(grads[1]) == (4 if bias else 3)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    with torch.no_grad():  # the inference path too
        torch.testing.assert_close(conv(x), ref(x), rtol=1e-6, atol=1e-6)


def test_backward_keeps_the_unpadded_input_only():
    conv = ReflectPadConv2d(4, 4, 3, 1)
    x = torch.randn(1, 4, 10, 8, requires_grad=True)
    shapes = {}
    for name, net in (("fused", conv), ("released", pair(conv))):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t,
                                                      lambda t: t):
            net(x)
        shapes[name] = saved
    padded = torch.Size([1, 4, 12, 10])
    assert padded in shapes["released"]  # what the fused module avoids keeping
    assert padded not in shapes["fused"] and torch.Size([1, 4, 10, 8]) in shapes["fused"]


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


def test_under_cpu_autocast():
    torch.manual_seed(0)
    conv = ReflectPadConv2d(8, 8, 3, 1)
    ref = pair(conv)
    x = torch.randn(2, 8, 12, 10)
    results = []
    for net in (conv, ref):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(xi)
        out.float().square().sum().backward()
        results.append((out.float(), xi.grad, net[1].weight.grad if net is ref else conv.weight.grad))
        assert out.dtype == torch.bfloat16 and xi.grad.dtype == torch.float32
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


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
