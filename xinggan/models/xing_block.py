"""The Xing block (paper Sec. 3.1-3.2): conv paths A and S, then SA and AS from the same A, S:
``A' = A + gamma_a attn(A, S)``, ``S' = S + gamma_s attn(S, A)``; outputs A' and cat(A', S').
As released the residual adds to the conv-path outputs.  The layers and switches:
``docs/architecture.md`` ("Xing blocks") and ``docs/networks.md``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from xinggan.models.attention import CrossAttention
from xinggan.models.layers import ReflectPadConv2d, ReLUDropout, conv_bias, norm_layer
from xinggan.models.multiscale_attention import build_multiscale_attention, uses_multiscale_attention


def build_cross_attention(gen_cfg, channels: int, grid_hw: tuple[int, int]) -> nn.Module:
    """One direction's attention: XingGAN's global :class:`CrossAttention`, or the XingGAN++
    windowed one (sized for the ``grid_hw`` feature grid)."""
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
    """One Xing block: ``(a, s) -> (a', concat(a', s'))``."""

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
            pass  # two plain conv paths
        elif self.share_projections:
            # released: one module and one gamma for both directions
            self.attention = build_cross_attention(gen_cfg, channels, grid_hw)
            self.gamma = nn.Parameter(torch.zeros(1))
        else:
            # paper's prose: separate SA and AS
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
        a = self.appearance_conv(appearance)
        s = self.shape_conv(shape)
        a_new, s_new = a, s
        if self.appearance_update:  # SA: queries/values from A, keys from S
            attn, gamma = self._direction("appearance")
            a_new = a + (gamma * attn(a, s)).to(a.dtype)  # gamma (float32) keeps autocast's dtype
        if self.shape_update:  # AS: queries/values from S, keys from A
            attn, gamma = self._direction("shape")
            s_new = s + (gamma * attn(s, a)).to(s.dtype)
        return a_new, torch.cat([a_new, s_new], dim=1)
