"""Building blocks of the XingGAN networks: norms and the released bias rule, padded convs,
transposed convs, the released initialisation (``docs/architecture.md``: "Norm" and
"Initialisation")."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from xinggan.ops.lean_layers import reflect_pad_conv2d, relu_dropout

NORMS = ("batch", "instance")


class ReflectPadConv2d(nn.Conv2d):
    """``ReflectionPad2d(pad)`` then ``Conv2d`` as one module: the released parameters and
    results, a leaner backward (:func:`xinggan.ops.lean_layers.reflect_pad_conv2d`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, reflect_pad: int,
                 stride: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, bias=bias)
        self.reflect_pad = reflect_pad

    def forward(self, x: Tensor) -> Tensor:
        return reflect_pad_conv2d(x, self.weight, self.bias, self.reflect_pad, self.stride[0])

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reflect_pad={self.reflect_pad}"


class ReLUDropout(nn.Module):
    """``ReLU`` then ``Dropout(p)`` as one module (same results, leaner backward in training:
    :func:`xinggan.ops.lean_layers.relu_dropout`); ReLU alone in eval mode or with ``p = 0``."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.p > 0:
            return relu_dropout(x, self.p)
        return torch.relu(x)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def conv_bias(norm: str) -> bool:
    """Whether a conv followed by ``norm`` carries a bias in the released networks."""
    _check_norm(norm)
    return norm == "instance"


def norm_layer(norm: str, channels: int) -> nn.Module:
    """``BatchNorm2d`` (affine) or ``InstanceNorm2d(affine=False)`` without running statistics."""
    _check_norm(norm)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def conv_norm_relu(prefix: str, in_channels: int, out_channels: int, kernel_size: int,
                   norm: str, stride: int = 1, reflect_pad: int = 0,
                   zero_pad: int = 0) -> list[tuple[str, nn.Module]]:
    """[ReflectionPad] Conv -> Norm -> ReLU, named ``conv_/norm_/relu_<prefix>`` (a reflection
    pad is part of the conv: :class:`ReflectPadConv2d`)."""
    if reflect_pad:
        conv = ReflectPadConv2d(in_channels, out_channels, kernel_size, reflect_pad,
                                stride=stride, bias=conv_bias(norm))
    else:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                         padding=zero_pad, bias=conv_bias(norm))
    layers: list[tuple[str, nn.Module]] = [
        (f"conv_{prefix}", conv),
        (f"norm_{prefix}", norm_layer(norm, out_channels)),
        (f"relu_{prefix}", nn.ReLU(inplace=True)),
    ]
    return layers


def transposed_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int,
                    bias: bool) -> nn.ConvTranspose2d:
    """ConvTranspose2d as released: kernel 3 stride 2 (padding 1, output padding 1) doubles the
    resolution; kernel 1 stride 1 is a per-pixel channel map.  Weight layout [in, out, k, k]."""
    padding = (kernel_size - 1) // 2
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=padding, output_padding=stride - 1, bias=bias)


@torch.no_grad()
def init_generator_weights(module: nn.Module, init_gain: float = 0.02) -> nn.Module:
    """The released generator initialisation, in place (meta tensors are skipped)."""
    if any(p.is_meta for p in module.parameters()):
        return module
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, init_gain)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    for name, p in module.named_parameters():
        if name.rsplit(".", 1)[-1].endswith("gamma"):
            p.zero_()
    return module
