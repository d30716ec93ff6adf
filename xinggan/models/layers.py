"""Building blocks shared by the XingGAN networks: normalisation, padded convolutions, init.

The released code (Pose-Transfer/PATN lineage) picks the normalisation per dataset and gives a
convolution a bias only when the normalisation has no affine shift of its own:

- ``norm: batch`` (Market-1501): ``BatchNorm2d`` (affine, running statistics), convs without
  bias;
- ``norm: instance`` (DeepFashion): ``InstanceNorm2d(affine=False, track_running_stats=False)``,
  convs with bias.

The exceptions (the 7x7 convs that output candidate images, the 1x1 query/key/value
projections) always carry a bias and say so where they are built.

Initialisation (:func:`init_generator_weights`) follows the released generator: conv and
transposed-conv weights ~ N(0, init_gain), biases keep PyTorch's default, BatchNorm weight
~ N(1, 0.02) and bias 0; the attention gammas start at 0 (they are created as zeros).  The
discriminators keep PyTorch's default initialisation, as released.
"""
from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "instance")


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
    """[ReflectionPad] -> Conv -> Norm -> ReLU, named ``pad_/conv_/norm_/relu_<prefix>``."""
    layers: list[tuple[str, nn.Module]] = []
    if reflect_pad:
        layers.append((f"pad_{prefix}", nn.ReflectionPad2d(reflect_pad)))
    layers += [
        (f"conv_{prefix}", nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                     padding=zero_pad, bias=conv_bias(norm))),
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
    """The released generator initialisation, applied in place to every submodule.

    Conv2d / ConvTranspose2d weights ~ N(0, init_gain) (biases untouched: PyTorch's default);
    BatchNorm2d weight ~ N(1, 0.02), bias 0.  Parameters named ``gamma`` (the attention
    residual scales) are set to 0.  Tensors on the ``meta`` device (shape-only builds) hold no
    values and are skipped.
    """
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
