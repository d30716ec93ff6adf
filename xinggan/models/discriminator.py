"""The two conditional discriminators of XingGAN (paper Sec. 3.4): shape and appearance.

Both are PATN's ResNet patch discriminator, as released:

    ReflPad3 -> Conv7x7 (C_in -> ndf) -> Norm -> ReLU
    -> Conv3x3 s2 (ndf -> 2 ndf) -> Norm -> ReLU -> Conv3x3 s2 (2 ndf -> 4 ndf) -> Norm -> ReLU
    -> n_blocks residual blocks  x + [ReflPad1 -> Conv3x3 -> Norm -> ReLU -> Dropout ->
                                      ReflPad1 -> Conv3x3 -> Norm](x)
    -> [head: patch only] Conv3x3 (4 ndf -> 1, padding 1)
    -> [sigmoid: true only] Sigmoid (computed in float32, see below)

With ``head: features`` (released) there is no final 1-channel conv: the output is the
(B, 4 ndf, H/4, W/4) map and the GAN loss is its mean.  Convs carry a bias only with
InstanceNorm.  The discriminators keep PyTorch's default initialisation (the released code never
initialises them).

- shape discriminator (released ``netD_PB``): input cat(image, target pose) = 3 + 18 channels;
- appearance discriminator (released ``netD_PP``): input cat(image, source image) = 6 channels.

The sigmoid is :class:`Float32Sigmoid`: under bfloat16 / float16 autocast the convs hand it
half-precision logits, and a sigmoid in that precision rounds to exactly 1.0 above a logit of
about 6.2 (bfloat16) or 8.3 (float16).  The BCE loss of such a probability has a zero gradient
(bfloat16: ``p (1 - p) = 0``) or an infinite one (float16: BCE's ``1 / max(p (1 - p), 1e-12)``
does not fit), where float32 gives about 1 for a fake target.  In float32 the sigmoid keeps
``1 - p`` up to a logit of about 16.6, as a float32 run does; the GAN loss
(:class:`xinggan.losses.GANLoss`) takes that float32 probability as it is, outside autocast.  It
has no parameters, so checkpoints and float32 results are unchanged.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
from torch import Tensor, nn

from xinggan.models.layers import ReflectPadConv2d, ReLUDropout, conv_bias, conv_norm_relu, norm_layer


class Float32Sigmoid(nn.Sigmoid):
    """``nn.Sigmoid`` computed in float32 (float64 stays float64) whatever the input dtype or
    autocast; returns the float32 probabilities.  See the module docstring."""

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
