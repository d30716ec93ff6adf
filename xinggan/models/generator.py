"""The XingGAN generator (paper Sec. 3): two encoders, T Xing blocks, two candidate decoders and
the fusion; with the released settings, the released network (``docs/architecture.md``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from xinggan.models.dense_fusion import DenseCoAttentionFusion
from xinggan.models.encoder import Encoder
from xinggan.models.fusion import CandidateDecoder, CoAttentionFusion
from xinggan.models.xing_block import XingBlock

NUM_KEYPOINTS = 18  # OpenPose COCO-18 heatmaps per pose


def build_fusion(cfg, appearance_channels: int, shape_channels: int,
                 block_channels: Sequence[tuple[int, int]] = ()) -> Optional[nn.Module]:
    """The fusion head from the full config; None when ``model.generator.fusion`` is false.

    ``block_channels`` lists the (appearance, shape) widths of every block's outputs, for the
    dense fusion of XingGAN++.
    """
    gen = cfg.model.generator
    if not gen.fusion:
        return None
    if gen.dense_fusion:  # XingGAN++: every block's codes feed the fusion maps
        return DenseCoAttentionFusion(appearance_channels, shape_channels, gen.ngf,
                                      cfg.model.norm, gen.num_candidates, list(block_channels),
                                      gen.dense_channels)
    return CoAttentionFusion(appearance_channels + shape_channels, gen.ngf, cfg.model.norm,
                             gen.num_candidates)


class XingGenerator(nn.Module):
    """``generator(source_image, source_pose, target_pose) -> image``, all (B, ., H, W)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        gen = cfg.model.generator
        norm = cfg.model.norm
        ngf = gen.ngf
        grid_hw = (cfg.data.height // 4, cfg.data.width // 4)
        self.num_keypoints = NUM_KEYPOINTS

        self.appearance_encoder = Encoder(3, ngf, norm)
        self.shape_encoder = Encoder(2 * NUM_KEYPOINTS, ngf, norm)
        self.blocks = nn.ModuleList(
            XingBlock(gen, norm, 4 * ngf if t == 0 else 8 * ngf, grid_hw)
            for t in range(gen.n_blocks)
        )
        appearance_channels = 4 * ngf
        shape_channels = 8 * ngf if gen.n_blocks > 0 else 4 * ngf
        # fusion: false -> a single image from the appearance decoder (ablation "no fusion").
        self.appearance_decoder = CandidateDecoder(
            appearance_channels, ngf, norm, gen.num_candidates if gen.fusion else 1)
        self.shape_decoder: Optional[CandidateDecoder] = (
            CandidateDecoder(shape_channels, ngf, norm, gen.num_candidates) if gen.fusion else None
        )
        self.fusion = build_fusion(cfg, appearance_channels, shape_channels,
                                   [(4 * ngf, 8 * ngf)] * gen.n_blocks)

    def forward(self, source_image: Tensor, source_pose: Tensor, target_pose: Tensor,
                return_details: bool = False):
        """source_image (B, 3, H, W) in [-1, 1]; poses (B, 18, H, W) -> image (B, 3, H, W).

        With ``return_details`` also returns a dict with the candidates (B, 2N, 3, H, W; the
        source image is the last, implicit one) and the fusion maps (B, 2N + 1, H, W).
        """
        k = self.num_keypoints
        if source_pose.shape[1] != k or target_pose.shape[1] != k:
            raise ValueError(
                f"XingGenerator: poses must have {k} channels, got {tuple(source_pose.shape)} and "
                f"{tuple(target_pose.shape)}"
            )
        appearance = self.appearance_encoder(source_image)
        shape = self.shape_encoder(torch.cat([source_pose, target_pose], dim=1))
        block_codes: list[tuple[Tensor, Tensor]] = []
        for block in self.blocks:
            appearance, shape = block(appearance, shape)
            block_codes.append((appearance, shape))

        appearance_candidates = self.appearance_decoder(appearance)  # (B, N, 3, H, W)
        if self.fusion is None:
            image = appearance_candidates[:, 0]
            details = {"candidates": appearance_candidates, "maps": None}
        else:
            shape_candidates = self.shape_decoder(shape)  # (B, N, 3, H, W)
            image, maps = self.fusion(source_image, appearance_candidates, shape_candidates,
                                      appearance, shape, block_codes)
            details = {"candidates": torch.cat([appearance_candidates, shape_candidates], 1),
                       "maps": maps}
        return (image, details) if return_details else image
