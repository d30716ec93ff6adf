"""Multi-scale cross-attention of XingGAN++ (EMSA / EMAS, our reading): windowed attention.

At each scale s the grid is cut into s x s windows, folded into the batch, attended within
(XingGAN's maths, or Enhanced Attention), and the scales are merged by a 1x1 conv.  ``scales:
[1]`` is XingGAN's attention.  Details: ``docs/xingganpp.md``, section 1.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from xinggan.ops.attention import ATTENTION_IMPLS, dot_product_attention
from xinggan.models.enhanced_attention import EnhancedAttention


def to_windows(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, C, h, w) -> (B * s * s, (h/s) * (w/s), C), windows and positions row-major."""
    b, c, h, w = x.shape
    s = scale
    x = x.view(b, c, s, h // s, s, w // s).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b * s * s, (h // s) * (w // s), c)


def from_windows(x: torch.Tensor, scale: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`to_windows`: (B * s * s, (h/s) * (w/s), C) -> (B, C, h, w)."""
    s = scale
    windows, _, c = x.shape
    b = windows // (s * s)
    x = x.reshape(b, s, s, height // s, width // s, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, height, width)


class MultiScaleCrossAttention(nn.Module):
    """One direction (SA or AS) on a ``grid_hw`` grid of ``channels``: queries and values from
    ``x``, keys from ``y``; ``enhanced_scales`` (a subset of ``scales``) use EA."""

    def __init__(self, channels: int, grid_hw: Sequence[int], scales: Iterable[int] = (1, 2, 4),
                 qk_reduction: int = 8, enhanced_scales: Iterable[int] = (),
                 enhanced_dim: int = 64, impl: str = "sdpa", chunk: int = 1024) -> None:
        super().__init__()
        height, width = (int(v) for v in grid_hw)
        scales = tuple(int(s) for s in scales)
        enhanced_scales = tuple(int(s) for s in enhanced_scales)
        if not scales or len(set(scales)) != len(scales) or any(s < 1 for s in scales):
            raise ValueError(f"scales must be distinct positive integers, got {list(scales)}")
        for s in scales:
            if height % s or width % s:
                raise ValueError(
                    f"scale {s} does not divide the {height} x {width} feature grid "
                    f"(scales {list(scales)})"
                )
        extra = [s for s in enhanced_scales if s not in scales]
        if extra:
            raise ValueError(f"enhanced_scales {extra} are not in scales {list(scales)}")
        if channels % qk_reduction:
            raise ValueError(f"qk_reduction {qk_reduction} does not divide channels {channels}")
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention impl {impl!r} is not one of {', '.join(ATTENTION_IMPLS)}")

        self.channels = channels
        self.grid_hw = (height, width)
        self.scales = scales
        self.enhanced_scales = tuple(s for s in scales if s in enhanced_scales)
        self.impl = impl
        self.chunk = chunk
        qk_channels = channels // qk_reduction
        self.query = nn.ModuleDict(
            {str(s): nn.Conv2d(channels, qk_channels, kernel_size=1) for s in scales})
        self.key = nn.ModuleDict(
            {str(s): nn.Conv2d(channels, qk_channels, kernel_size=1) for s in scales})
        self.value = nn.Conv2d(channels, channels, kernel_size=1)  # shared by every scale
        self.enhanced = nn.ModuleDict({
            str(s): EnhancedAttention(window, window, enhanced_dim)
            for s in self.enhanced_scales
            for window in [(height // s) * (width // s)]
        })
        self.merge = (nn.Conv2d(len(scales) * channels, channels, kernel_size=1)
                      if len(scales) > 1 else nn.Identity())

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, grid_hw={self.grid_hw}, scales={self.scales}, "
                f"enhanced_scales={self.enhanced_scales}, impl={self.impl!r}")

    def attend_at_scale(self, scale: int, query: torch.Tensor, key: torch.Tensor,
                        value: torch.Tensor) -> torch.Tensor:
        """Attention at one scale on projected maps (B, dq, h, w), (B, dq, h, w), (B, C, h, w)."""
        _, _, height, width = query.shape
        q, k, v = (to_windows(t, scale) for t in (query, key, value))  # (B*s*s, n, .)
        if str(scale) in self.enhanced:
            out = self.enhanced[str(scale)](q, k, v)
        else:
            out = dot_product_attention(q, k, v, self.impl, self.chunk)
        return from_windows(out, scale, height, width)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Queries and values from ``x``, keys from ``y``; both and the result (B, C, h, w)."""
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"MultiScaleCrossAttention expects two (B, {self.channels}, h, w) maps of the "
                f"same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        height, width = x.shape[-2:]
        for s in self.scales:
            if height % s or width % s:
                raise ValueError(f"scale {s} does not divide the {height} x {width} feature grid")
        value = self.value(x)
        outputs = [self.attend_at_scale(s, self.query[str(s)](x), self.key[str(s)](y), value)
                   for s in self.scales]
        return self.merge(torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0])


def enhanced_scales_of(gen_cfg) -> tuple[int, ...]:
    """The EA scales of a ``GeneratorConfig`` (``enhanced_attention_scales: []``: all)."""
    if not gen_cfg.enhanced_attention:
        return ()
    return tuple(gen_cfg.enhanced_attention_scales) or tuple(gen_cfg.scales)


def uses_multiscale_attention(gen_cfg) -> bool:
    """True when the config asks for more than XingGAN's single global attention."""
    return tuple(gen_cfg.scales) != (1,) or bool(enhanced_scales_of(gen_cfg))


def build_multiscale_attention(gen_cfg, channels: int,
                               grid_hw: Sequence[int]) -> MultiScaleCrossAttention:
    """A :class:`MultiScaleCrossAttention` for one direction from a ``GeneratorConfig``."""
    return MultiScaleCrossAttention(
        channels, grid_hw,
        scales=gen_cfg.scales,
        qk_reduction=gen_cfg.qk_reduction,
        enhanced_scales=enhanced_scales_of(gen_cfg),
        enhanced_dim=gen_cfg.enhanced_attention_dim,
        impl=gen_cfg.attention_impl,
        chunk=gen_cfg.attention_chunk,
    )
