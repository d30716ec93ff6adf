"""Reflection padding whose backward stays deterministic under deterministic algorithms.

PyTorch's CUDA ``reflection_pad2d_backward`` uses ``atomicAdd`` and so refuses to run with
deterministic algorithms on; :func:`reflection_pad2d_fold` gives the same gradient with slices,
``flip`` and adds, and :func:`reflection_pad2d_backward` takes it whenever they are on.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

Pad = Union[int, Sequence[int]]

__all__ = ["reflect_pad", "reflection_pad2d_backward", "reflection_pad2d_fold",
           "ReflectPad2dFunction"]


def _pad4(pad: Pad) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) from an int or a 4-sequence in ``F.pad``'s order."""
    if isinstance(pad, int):
        return (pad,) * 4
    pad = tuple(int(p) for p in pad)
    if len(pad) != 4:
        raise ValueError(f"reflection pad: expected an int or (left, right, top, bottom), "
                         f"got {pad}")
    return pad


def reflection_pad2d_fold(grad: Tensor, pad: Pad) -> Tensor:
    """The (..., H, W) gradient of ``x`` from that of ``F.pad(x, pad, mode="reflect")``: each
    border, flipped, added onto the rows (then columns) it mirrors, in a fixed order."""
    left, right, top, bottom = _pad4(pad)
    if min(left, right, top, bottom) < 0:
        raise ValueError(f"reflection pad: negative padding {(left, right, top, bottom)}")
    height = grad.shape[-2] - top - bottom
    width = grad.shape[-1] - left - right
    if max(top, bottom) >= height or max(left, right) >= width:
        raise ValueError(
            f"reflection pad {(left, right, top, bottom)}: each pad must be smaller than the "
            f"input size ({height} x {width}) it mirrors")
    # rows: centre, plus the mirrored top and bottom borders
    rows = grad[..., top:top + height, :].clone()
    if top:
        rows[..., 1:top + 1, :] += grad[..., :top, :].flip(-2)
    if bottom:
        rows[..., height - 1 - bottom:height - 1, :] += grad[..., top + height:, :].flip(-2)
    # columns of that (the corners of the padded tensor reach x through both steps)
    out = rows[..., left:left + width].clone()
    if left:
        out[..., 1:left + 1] += rows[..., :left].flip(-1)
    if right:
        out[..., width - 1 - right:width - 1] += rows[..., left + width:].flip(-1)
    return out


def reflection_pad2d_backward(grad: Tensor, x: Tensor, pad: Pad) -> Tensor:
    """Gradient of ``x`` through a 2-D reflection pad: :func:`reflection_pad2d_fold` when
    deterministic algorithms are on (any device), else ``aten::reflection_pad2d_backward``."""
    pad4 = _pad4(pad)
    if torch.are_deterministic_algorithms_enabled():
        return reflection_pad2d_fold(grad, pad4)
    return torch.ops.aten.reflection_pad2d_backward(grad, x, list(pad4))


class ReflectPad2dFunction(torch.autograd.Function):
    """``F.pad(x, pad, mode="reflect")`` on the last two dimensions, with the backward of
    :func:`reflection_pad2d_backward`."""

    @staticmethod
    def forward(ctx, x: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
        ctx.pad = pad
        ctx.save_for_backward(x)  # as autograd's own backward of F.pad does
        with torch.autocast(x.device.type, enabled=False):  # in x's dtype (CPU autocast: float32)
            return F.pad(x, pad, mode="reflect")

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        return reflection_pad2d_backward(grad_out, x, ctx.pad), None


def reflect_pad(x: Tensor, pad: Pad) -> Tensor:
    """``F.pad(x, pad, mode="reflect")`` for (N, C, H, W) or (C, H, W) tensors; its backward is
    deterministic whenever deterministic algorithms are on."""
    return ReflectPad2dFunction.apply(x, _pad4(pad))
