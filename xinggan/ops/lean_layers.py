"""Memory-lean autograd functions behind two layer pairs of the XingGAN networks.

Each computes exactly what the plain PyTorch layers compute, and keeps less for backward:

- :func:`reflect_pad_conv2d`: ``conv2d(reflection_pad(x))`` keeping the unpadded input
  (:class:`ReflectPadConvFunction`; the pad's backward is deterministic under
  ``torch.use_deterministic_algorithms``, :mod:`xinggan.ops.reflection`);
- :func:`relu_dropout`: ``dropout(relu(x))`` keeping only its output
  (:class:`ReLUDropoutFunction`).

The modules :class:`xinggan.models.layers.ReflectPadConv2d` and
:class:`xinggan.models.layers.ReLUDropout` call them in training; outputs and gradients are
those of the plain layers, in float32 and under autocast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from xinggan.ops.reflection import reflection_pad2d_backward


class ReflectPadConvFunction(torch.autograd.Function):
    """conv2d(reflection_pad(x)) that keeps the unpadded ``x`` for backward.

    Autograd through ``F.pad`` then ``F.conv2d`` keeps the padded copy of ``x``, on top of the
    unpadded ``x`` that the previous layer (ReLU, dropout) usually keeps anyway.  Here the
    backward pads ``x`` again (a cheap copy) and calls the same ``convolution_backward`` and
    ``reflection_pad2d_backward`` kernels that autograd would, so the gradients are the same.
    With deterministic algorithms on, the pad's gradient comes from the deterministic fold of
    :mod:`xinggan.ops.reflection` instead (PyTorch's CUDA kernel for it refuses to run then).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias, pad: int, stride: int) -> Tensor:
        device = x.device.type
        if torch.is_autocast_enabled(device):  # cast as autocast would cast the conv's inputs,
            dtype = torch.get_autocast_dtype(device)  # so that backward sees one dtype
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        ctx.pad, ctx.stride, ctx.has_bias = pad, stride, bias is not None
        ctx.save_for_backward(x, weight)
        with torch.autocast(device, enabled=False):
            return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), weight, bias, stride)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, weight = ctx.saved_tensors
        pad, stride = ctx.pad, ctx.stride
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        padded = F.pad(x, (pad,) * 4, mode="reflect")
        grad_padded, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_out, padded, weight, [weight.shape[0]] if ctx.has_bias else None,
            [stride, stride], [0, 0], [1, 1], False, [0, 0], 1,
            [need_x, need_w, need_b and ctx.has_bias])
        grad_x = reflection_pad2d_backward(grad_padded, x, pad) if need_x else None
        return grad_x, grad_w, grad_b, None, None


class ReLUDropoutFunction(torch.autograd.Function):
    """dropout(relu(x)) that keeps only its output for backward.

    The output y = relu(x) * noise, with noise in {0, 1/(1-p)} drawn as ``nn.Dropout`` draws it
    on CPU (``bernoulli_(1 - p)`` then ``div_(1 - p)``: the same random numbers).  y > 0 exactly
    where x > 0 and the unit was kept, so dx = dy / (1 - p) where y > 0, else 0: the same
    products autograd forms through ReLU and dropout, without keeping the ReLU output and the
    dropout noise (two activations per conv path).
    """

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


def reflect_pad_conv2d(x: Tensor, weight: Tensor, bias, pad: int, stride: int) -> Tensor:
    """``conv2d(F.pad(x, pad, 'reflect'), weight, bias, stride)``, keeping only ``x`` for backward."""
    return ReflectPadConvFunction.apply(x, weight, bias, pad, stride)


def relu_dropout(x: Tensor, p: float) -> Tensor:
    """``dropout(relu(x), p)`` in training (same random numbers as ``nn.Dropout`` on CPU),
    keeping only the output for backward."""
    return ReLUDropoutFunction.apply(x, p)
