"""Co-attention fusion (CAF, paper Sec. 3.3): two candidate decoders, 2N + 1 fusion maps, and
one weighted sum over the candidates (the source image last), with no final tanh, as released.
Layers: ``docs/architecture.md`` ("Co-attention fusion"); ``fusion: false`` in
``docs/networks.md``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from xinggan.models.layers import ReflectPadConv2d, conv_bias, norm_layer, transposed_conv


class CandidateDecoder(nn.Sequential):
    """(B, in_channels, h, w) -> (B, num_images, 3, 4h, 4w) in [-1, 1]; a code wider than
    4 ngf (the shape decoder's) is first projected by a 1x1 ConvT -> Norm -> ReLU."""

    def __init__(self, in_channels: int, ngf: int, norm: str, num_images: int) -> None:
        bias = conv_bias(norm)
        layers: list[tuple[str, nn.Module]] = []
        if in_channels != 4 * ngf:
            layers += [
                ("project", transposed_conv(in_channels, 4 * ngf, 1, 1, bias)),
                ("project_norm", norm_layer(norm, 4 * ngf)),
                ("project_relu", nn.ReLU(inplace=True)),
            ]
        layers += [
            ("up1", transposed_conv(4 * ngf, 2 * ngf, 3, 2, bias)),
            ("norm1", norm_layer(norm, 2 * ngf)),
            ("relu1", nn.ReLU(inplace=True)),
            ("up2", transposed_conv(2 * ngf, ngf, 3, 2, bias)),
            ("norm2", norm_layer(norm, ngf)),
            ("relu2", nn.ReLU(inplace=True)),
            # the image conv always has a bias in the released code
            ("conv_out", ReflectPadConv2d(ngf, 3 * num_images, 7, 3)),
            ("tanh", nn.Tanh()),
        ]
        super().__init__(OrderedDict(layers))
        self.num_images = num_images

    def forward(self, code: Tensor) -> Tensor:
        images = super().forward(code)  # (B, 3N, H, W), candidate k in channels 3k..3k+2
        b, _, h, w = images.shape
        return images.view(b, self.num_images, 3, h, w)


class CoAttentionFusion(nn.Module):
    """The attention head and the weighted sum over the 2N + 1 candidates."""

    def __init__(self, code_channels: int, ngf: int, norm: str, num_candidates: int) -> None:
        super().__init__()
        bias = conv_bias(norm)
        self.num_maps = 2 * num_candidates + 1
        self.up1 = transposed_conv(code_channels, 4 * ngf, 3, 2, bias)
        self.norm1 = norm_layer(norm, 4 * ngf)
        self.up2 = transposed_conv(4 * ngf, 2 * ngf, 3, 2, bias)
        self.norm2 = norm_layer(norm, 2 * ngf)
        self.to_maps = transposed_conv(2 * ngf, self.num_maps, 1, 1, bias)
        self.relu = nn.ReLU(inplace=True)

    def head_input(self, appearance_code: Tensor, shape_code: Tensor,
                   block_codes: Optional[Sequence[tuple[Tensor, Tensor]]] = None) -> Tensor:
        """The head's input: cat(final appearance code, final shape code).  ``block_codes``
        (every block's (appearance, shape) output) is read by the dense fusion of XingGAN++."""
        del block_codes
        return torch.cat([appearance_code, shape_code], dim=1)

    def fusion_maps(self, appearance_code: Tensor, shape_code: Tensor,
                    block_codes: Optional[Sequence[tuple[Tensor, Tensor]]] = None) -> Tensor:
        """(B, 2N+1, H, W) softmax weights: appearance candidates, shape candidates, source."""
        x = self.head_input(appearance_code, shape_code, block_codes)
        x = self.relu(self.norm1(self.up1(x)))
        x = self.relu(self.norm2(self.up2(x)))
        return torch.softmax(self.to_maps(x), dim=1)

    def forward(self, source_image: Tensor, appearance_candidates: Tensor,
                shape_candidates: Tensor, appearance_code: Tensor, shape_code: Tensor,
                block_codes: Optional[Sequence[tuple[Tensor, Tensor]]] = None,
                ) -> tuple[Tensor, Tensor]:
        """Candidates (B, N, 3, H, W) each -> fused image (B, 3, H, W), maps (B, 2N+1, H, W)."""
        maps = self.fusion_maps(appearance_code, shape_code, block_codes)  # (B, 2N+1, H, W)
        candidates = torch.cat(
            [appearance_candidates, shape_candidates, source_image.unsqueeze(1)], dim=1
        )  # (B, 2N+1, 3, H, W)
        if candidates.shape[1] != self.num_maps:
            raise ValueError(
                f"{type(self).__name__}: {candidates.shape[1]} candidates for {self.num_maps} maps"
            )
        return (maps.unsqueeze(2) * candidates).sum(1), maps
