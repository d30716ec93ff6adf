"""Reflection pad + conv and ReLU + dropout computing what PyTorch's layers compute while keeping
less for backward (the unpadded input; the dropout output only).
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor

from xinggan.ops.reflection import reflect_pad


def reflect_pad_conv2d(x: Tensor, weight: Tensor, bias, pad: int, stride: int) -> Tensor:
    """``conv2d(F.pad(x, pad, 'reflect'), weight, bias, stride)``, keeping ``x`` for backward
    (padded and cast again there) instead of the padded input."""
    device = x.device.type
    padded = reflect_pad(x, pad)
    dtype = padded.dtype
    if torch.is_autocast_enabled(device) and dtype != torch.float64:
        dtype = torch.get_autocast_dtype(device)  # cast here as autocast would cast it
        padded = padded.to(dtype)
    if torch.compiler.is_compiling():
        return F.conv2d(padded, weight, bias, stride)
    padded_ref = weakref.ref(padded)  # the hooks outlive this call: no strong reference

    def pack(t: Tensor):
        return (x, pad, dtype) if t is padded_ref() else t

    def unpack(t):
        return F.pad(t[0], (t[1],) * 4, mode="reflect").to(t[2]) if isinstance(t, tuple) else t

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        return F.conv2d(padded, weight, bias, stride)


class ReLUDropoutFunction(torch.autograd.Function):
    """dropout(relu(x)) keeping only its output y: dx = dy / (1 - p) where y > 0, else 0.
    The noise is drawn as ``nn.Dropout`` draws it on CPU (the same random numbers)."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        y = torch.relu(x)
        noise = torch.empty_like(y).bernoulli_(1 - p).div_(1 - p)
        y.mul_(noise)
        ctx.scale = 1 / (1 - p)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: Tensor):
        (y,) = ctx.saved_tensors
        grad_x = torch.where(y > 0, grad_y * ctx.scale, torch.zeros((), dtype=grad_y.dtype,
                                                                     device=grad_y.device))
        return grad_x, None


def relu_dropout(x: Tensor, p: float) -> Tensor:
    """``dropout(relu(x), p)`` in training (same random numbers as ``nn.Dropout`` on CPU),
    keeping only the output for backward."""
    return ReLUDropoutFunction.apply(x, p)
