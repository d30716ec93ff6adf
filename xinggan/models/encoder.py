"""The appearance and shape encoders of XingGAN (paper Sec. 3): (B, C_in, H, W) ->
(B, 4 ngf, H/4, W/4); C_in is 3 (source image) or 36 (both poses).  Layers:
``docs/architecture.md``.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from xinggan.models.layers import conv_norm_relu


class Encoder(nn.Sequential):
    """Down-sampling encoder: (B, in_channels, H, W) -> (B, 4 ngf, H/4, W/4)."""

    def __init__(self, in_channels: int, ngf: int, norm: str) -> None:
        super().__init__(OrderedDict(
            conv_norm_relu("in", in_channels, ngf, 7, norm, reflect_pad=3)
            + conv_norm_relu("down1", ngf, 2 * ngf, 3, norm, stride=2, zero_pad=1)
            + conv_norm_relu("down2", 2 * ngf, 4 * ngf, 3, norm, stride=2, zero_pad=1)
        ))
        self.in_channels = in_channels
        self.out_channels = 4 * ngf

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected a (B, {self.in_channels}, H, W) tensor, "
                f"got {tuple(x.shape)}"
            )
        return super().forward(x)
