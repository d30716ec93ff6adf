"""Reflection padding with a backward that stays deterministic under deterministic algorithms.

The gradient of ``F.pad(x, pad, mode="reflect")`` adds the gradient of every border row and
column of the padded tensor onto the row or column of ``x`` it mirrors.  PyTorch's CUDA kernel
for that (``aten::reflection_pad2d_backward``) scatters with ``atomicAdd``, so with
deterministic algorithms switched on it raises instead of running (see ``docs/determinism.md``).

:func:`reflection_pad2d_fold` computes the same gradient with slices, ``flip`` and in-place
adds only, in a fixed order on every device: first the rows (the centre rows plus the mirrored
top and bottom borders), then the columns of that result (the centre plus the mirrored left and
right borders).  :func:`reflection_pad2d_backward` picks it whenever
``torch.are_deterministic_algorithms_enabled()`` is true, on any device (so a CPU run takes the
same path as a CUDA run), and PyTorch's own kernel otherwise.  :func:`reflect_pad` is
``F.pad(x, pad, mode="reflect")`` with that backward; the fold gives exactly what PyTorch's
kernel gives.
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
    """The gradient of ``x`` from the gradient of ``F.pad(x, pad, mode="reflect")``.

    ``grad`` is (..., H + top + bottom, W + left + right); the result is (..., H, W).  Padded
    row ``top - i`` (i = 1..top) is a copy of row ``i`` of ``x`` and padded row
    ``top + H - 1 + i`` (i = 1..bottom) a copy of row ``H - 1 - i``, and the same for columns;
    so each border, flipped, is added onto the rows (columns) next to the edge it mirrors.
    Slices, ``flip`` and adds only: every element is summed in the same order on every run.
    """
    left, right, top, bottom = _pad4(pad)
    if min(left, right, top, bottom) < 0:
        raise ValueError(f"reflection pad: negative padding {(left, right, top, bottom)}")
    height = grad.shape[-2] - top - bottom
    width = grad.shape[-1] - left - right
    if max(top, bottom) >= height or max(left, right) >= width:
        raise ValueError(
            f"reflection pad {(left, right, top, bottom)}: each pad must be smaller than the "
            f"input size ({height} x {width}) it mirrors")
    # rows: centre, plus the top border onto rows 1..top, the bottom one onto the rows above
    # the last (both mirrored)
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
