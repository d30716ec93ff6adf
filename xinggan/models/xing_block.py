"""The Xing block: one crossing of the appearance and shape branches (paper Sec. 3.1-3.2).

Block t takes the appearance code ``a`` (4 ngf channels) and the shape code ``s`` (4 ngf in the
first block, 8 ngf afterwards) and, as the released code does:

1. appearance conv path: ReflPad1 -> Conv3x3 -> Norm -> ReLU -> Dropout -> ReflPad1 -> Conv3x3
   -> Norm, giving A (4 ngf); each pad is part of its conv (``ReflectPadConv2d``) and ReLU +
   dropout are one module (``ReLUDropout``), with the released maths and a leaner backward;
2. shape conv path: ReflPad1 -> Conv3x3 (c -> c) -> Norm -> ReLU -> Dropout -> ReflPad1 ->
   Conv3x3 (c -> 4 ngf), no norm and no activation at the end, giving S;
3. shape-guided appearance (SA) and appearance-guided shape (AS), both from the same pre-update
   A and S:  A' = A + gamma_a * attn_a(A, S),  S' = S + gamma_s * attn_s(S, A);
4. outputs: appearance code A' and shape code concat(A', S') (8 ngf, appearance first).

The residual adds to the conv-path outputs, not to the block's inputs (released code; the
paper's figure suggests a skip from the input).  Switches (``model.generator``):

- ``share_projections`` -- released: one attention module (one set of q/k/v projections) and
  one ``gamma`` serve SA and AS; paper's prose: separate SA and AS modules, so false gives each
  direction its own module and gamma (``appearance_attention``/``appearance_gamma`` and
  ``shape_attention``/``shape_gamma``).
- ``appearance_update`` / ``shape_update`` -- false skips SA / AS: that direction's residual is
  not added and the conv-path output passes through (ablations "AS only" / "SA only").
- ``dropout`` -- 0.5 as released (active in training, off in eval).

In the released checkpoints a block is ``model.att.<t>`` (``conv_block_stream1`` = appearance
conv path, ``conv_block_stream2`` = shape conv path, ``query_conv``/``key_conv``/``value_conv``,
``gamma``).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from xinggan.models.attention import CrossAttention
from xinggan.models.layers import ReflectPadConv2d, ReLUDropout, conv_bias, norm_layer
from xinggan.models.multiscale_attention import build_multiscale_attention, uses_multiscale_attention


def build_cross_attention(gen_cfg, channels: int, grid_hw: tuple[int, int]) -> nn.Module:
    """The attention module of one direction of one Xing block, from ``model.generator``.

    XingGAN: global :class:`CrossAttention`. XingGAN++ (``scales`` other than ``[1]``, or
    enhanced attention): windowed attention at several scales. ``grid_hw`` is the (h, w)
    feature grid the module will see; the windowed attention needs it to size its windows.
    """
    if uses_multiscale_attention(gen_cfg):
        return build_multiscale_attention(gen_cfg, channels, grid_hw)
    return CrossAttention(channels, gen_cfg.qk_reduction, gen_cfg.attention_impl,
                          gen_cfg.attention_chunk)


def _conv_path(in_channels: int, out_channels: int, norm: str, dropout: float,
               final_norm: bool) -> nn.Sequential:
    layers = [
        ("conv1", ReflectPadConv2d(in_channels, in_channels, 3, 1, bias=conv_bias(norm))),
        ("norm1", norm_layer(norm, in_channels)),
        ("relu_dropout1", ReLUDropout(dropout)),
        ("conv2", ReflectPadConv2d(in_channels, out_channels, 3, 1, bias=conv_bias(norm))),
    ]
    if final_norm:
        layers.append(("norm2", norm_layer(norm, out_channels)))
    return nn.Sequential(OrderedDict(layers))


class XingBlock(nn.Module):
    """One Xing block: ``(a, s) -> (a', concat(a', s'))``; see the module docstring."""

    def __init__(self, gen_cfg, norm: str, shape_in_channels: int,
                 grid_hw: tuple[int, int]) -> None:
        super().__init__()
        channels = 4 * gen_cfg.ngf
        self.channels = channels
        self.shape_in_channels = shape_in_channels
        self.share_projections = gen_cfg.share_projections
        self.appearance_update = gen_cfg.appearance_update
        self.shape_update = gen_cfg.shape_update

        self.appearance_conv = _conv_path(channels, channels, norm, gen_cfg.dropout,
                                          final_norm=True)
        self.shape_conv = _conv_path(shape_in_channels, channels, norm, gen_cfg.dropout,
                                     final_norm=False)

        if not (self.appearance_update or self.shape_update):
            pass  # no attention at all: the block is two plain conv paths
        elif self.share_projections:
            # Released code: one module and one gamma for both directions.
            self.attention = build_cross_attention(gen_cfg, channels, grid_hw)
            self.gamma = nn.Parameter(torch.zeros(1))
        else:
            # Paper's prose: separate SA and AS blocks.
            if self.appearance_update:
                self.appearance_attention = build_cross_attention(gen_cfg, channels, grid_hw)
                self.appearance_gamma = nn.Parameter(torch.zeros(1))
            if self.shape_update:
                self.shape_attention = build_cross_attention(gen_cfg, channels, grid_hw)
                self.shape_gamma = nn.Parameter(torch.zeros(1))

    def _direction(self, which: str) -> tuple[nn.Module, Tensor]:
        if self.share_projections:
            return self.attention, self.gamma
        return getattr(self, f"{which}_attention"), getattr(self, f"{which}_gamma")

    def forward(self, appearance: Tensor, shape: Tensor) -> tuple[Tensor, Tensor]:
        """appearance (B, 4ngf, h, w), shape (B, c, h, w) -> (B, 4ngf, h, w), (B, 8ngf, h, w)."""
        if shape.shape[1] != self.shape_in_channels:
            raise ValueError(
                f"XingBlock: expected a shape code with {self.shape_in_channels} channels, got "
                f"{tuple(shape.shape)}"
            )
        a = self.appearance_conv(appearance)  # A
        s = self.shape_conv(shape)  # S
        a_new, s_new = a, s
        if self.appearance_update:  # SA: queries/values from A, keys from S
            attn, gamma = self._direction("appearance")
            a_new = a + (gamma * attn(a, s)).to(a.dtype)  # gamma (float32) keeps autocast's dtype
        if self.shape_update:  # AS: queries/values from S, keys from A
            attn, gamma = self._direction("shape")
            s_new = s + (gamma * attn(s, a)).to(s.dtype)
        return a_new, torch.cat([a_new, s_new], dim=1)
