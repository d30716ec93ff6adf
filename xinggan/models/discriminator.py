"""The shape and appearance discriminators of XingGAN (paper Sec. 3.4): PATN's ResNet
discriminator as released (``docs/architecture.md``, "Discriminators"), with an optional patch
head and a float32 sigmoid (``docs/networks.md``, "Losses").
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
from torch import Tensor, nn

from xinggan.models.layers import ReflectPadConv2d, ReLUDropout, conv_bias, conv_norm_relu, norm_layer


class Float32Sigmoid(nn.Sigmoid):
    """``nn.Sigmoid`` in float32 (float64 stays) whatever the input dtype or autocast."""

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return torch.sigmoid(x.to(torch.promote_types(x.dtype, torch.float32)))


class ResidualBlock(nn.Module):
    """x + conv_block(x), with dropout between the two convs as released."""

    def __init__(self, channels: int, norm: str, dropout: float) -> None:
        super().__init__()
        bias = conv_bias(norm)
        self.conv_block = nn.Sequential(OrderedDict([
            ("conv1", ReflectPadConv2d(channels, channels, 3, 1, bias=bias)),
            ("norm1", norm_layer(norm, channels)),
            ("relu_dropout1", ReLUDropout(dropout)),
            ("conv2", ReflectPadConv2d(channels, channels, 3, 1, bias=bias)),
            ("norm2", norm_layer(norm, channels)),
        ]))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResnetDiscriminator(nn.Sequential):
    """``D(image, condition)``: scores for an image and its condition, concatenated on channels.

    ``condition`` may be omitted when ``image`` already holds both (e.g. a pair drawn from the
    image pool).
    """

    def __init__(self, in_channels: int, ndf: int, n_blocks: int, norm: str, dropout: float,
                 sigmoid: bool, head: str = "features") -> None:
        if head not in ("features", "patch"):
            raise ValueError(f"discriminator head must be 'features' or 'patch', got {head!r}")
        layers = (
            conv_norm_relu("in", in_channels, ndf, 7, norm, reflect_pad=3)
            + conv_norm_relu("down1", ndf, 2 * ndf, 3, norm, stride=2, zero_pad=1)
            + conv_norm_relu("down2", 2 * ndf, 4 * ndf, 3, norm, stride=2, zero_pad=1)
        )
        layers += [(f"block{i + 1}", ResidualBlock(4 * ndf, norm, dropout))
                   for i in range(n_blocks)]
        if head == "patch":  # our option: a 1-channel patch score map
            layers.append(("head", nn.Conv2d(4 * ndf, 1, kernel_size=3, padding=1)))
        if sigmoid:
            layers.append(("sigmoid", Float32Sigmoid()))
        super().__init__(OrderedDict(layers))
        self.in_channels = in_channels

    def forward(self, image: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        x = image if condition is None else torch.cat([image, condition], dim=1)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected {self.in_channels} input channels "
                f"(image ++ condition), got {tuple(x.shape)}"
            )
        return super().forward(x)
