"""Densely connected co-attention fusion of XingGAN++ (without stages: XingGAN's CAF head).

XingGAN++ (Tang, Shao, Sebe, Van Gool; IEEE TPAMI 2025, arXiv 2501.08900) replaces XingGAN's
co-attention fusion (CAF) by a "densely connected co-attention fusion module" that fuses the
appearance and shape features of different stages.  Only the abstract was available to us and
no code is public: this module is **our reading of XingGAN++, not the authors' code**
(``docs/xingganpp.md``, section 3).

The released CAF head (``docs/architecture.md``, "Co-attention fusion"; ``fusion.py``) predicts 2N + 1 fusion
maps from the final codes and mixes the candidate images with them::

    maps  = softmax_maps(head(cat(final appearance code (4 ngf), final shape code (8 ngf))))
    head  = ConvT3x3 s2 (-> 4 ngf, bias=b) -> Norm -> ReLU
            -> ConvT3x3 s2 (-> 2 ngf, bias=b) -> Norm -> ReLU -> ConvT1x1 (-> 2N + 1, bias=b)
    image = sum_k maps_k * candidate_k   over the appearance candidates, the shape candidates
                                         and finally the source image

(``bias=b``: a bias only with InstanceNorm, as released.)  The dense version adds, for every
stage t = 1..T, the codes of Xing block t, ``cat(appearance_t, shape_t)``, compressed by a
per-stage 1x1 conv (with bias; no norm, no activation: a learned bottleneck) to
``dense_channels`` channels, concatenated after the final codes.  Only the input width of the
head's first layer changes; the candidates still come from the two decoders on the final codes.

Without stages (``block_channels=()``) the module has exactly the layers of the released head
(same names as ``fusion.CoAttentionFusion``: ``up1``, ``norm1``, ``up2``, ``norm2``,
``to_maps``), computes exactly its function, and takes the same ``forward`` arguments, so it
can stand in for it.  :meth:`DenseCoAttentionFusion.load_caf_state_dict` copies a plain CAF
head's weights into a dense head, e.g. to start XingGAN++'s fusion from a trained XingGAN.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from xinggan.models.fusion import CoAttentionFusion


class DenseCoAttentionFusion(CoAttentionFusion):
    """Fusion-map head over the final codes and (dense) every block's codes; weighted sum.

    Args:
        appearance_channels: width of the final appearance code (4 ngf).
        shape_channels: width of the final shape code (8 ngf: updated appearance ++ shape).
        ngf: generator width; the head's hidden layers have 4 ngf and 2 ngf channels.
        norm: "batch" or "instance" (the head's convs carry a bias only with "instance").
        num_candidates: N images per decoder; the head predicts 2N + 1 maps.
        block_channels: the (appearance, shape) widths of the outputs of blocks 1..T; each gets a
            1x1 compression.  Empty: no dense connections, XingGAN's CAF head exactly.
        dense_channels: width of each compressed stage.
    """

    def __init__(self, appearance_channels: int, shape_channels: int, ngf: int, norm: str,
                 num_candidates: int, block_channels: Sequence[tuple[int, int]] = (),
                 dense_channels: int = 32) -> None:
        final_channels = appearance_channels + shape_channels
        in_channels = final_channels + len(block_channels) * dense_channels
        super().__init__(in_channels, ngf, norm, num_candidates)  # up1 ... to_maps, as released
        self.final_channels = final_channels
        # one 1x1 conv per stage on cat(appearance_t, shape_t)
        self.stage_compressions = nn.ModuleList(
            nn.Conv2d(a + s, dense_channels, kernel_size=1) for a, s in block_channels)

    @property
    def dense(self) -> bool:
        return len(self.stage_compressions) > 0

    @classmethod
    def from_config(cls, cfg) -> "DenseCoAttentionFusion":
        """From the full config: block codes of 4 ngf + 8 ngf, stages only with ``dense_fusion``."""
        g = cfg.model.generator
        shape_channels = 8 * g.ngf if g.n_blocks > 0 else 4 * g.ngf
        blocks = [(4 * g.ngf, 8 * g.ngf)] * g.n_blocks if g.dense_fusion else []
        return cls(4 * g.ngf, shape_channels, g.ngf, cfg.model.norm, g.num_candidates, blocks,
                   g.dense_channels)

    # ------------------------------------------------------------------------------
    def head_input(self, appearance_code: Tensor, shape_code: Tensor,
                   block_codes: Optional[Sequence[tuple[Tensor, Tensor]]] = None) -> Tensor:
        """cat(final appearance, final shape, compressed block 1, ..., compressed block T)."""
        parts = [appearance_code, shape_code]
        if self.dense:
            if block_codes is None or len(block_codes) != len(self.stage_compressions):
                got = "none" if block_codes is None else len(block_codes)
                raise ValueError(
                    f"DenseCoAttentionFusion needs the codes of all "
                    f"{len(self.stage_compressions)} blocks, got {got}"
                )
            for compress, (appearance_t, shape_t) in zip(self.stage_compressions, block_codes):
                parts.append(compress(torch.cat([appearance_t, shape_t], dim=1)))
        return torch.cat(parts, dim=1)

    # ------------------------------------------------------------------------------
    def head_state_dict(self) -> dict[str, Tensor]:
        """The state of the CAF layers only (``up1`` ... ``to_maps``), in layer order."""
        return {k: v for k, v in self.state_dict().items()
                if not k.startswith("stage_compressions.")}

    @torch.no_grad()
    def load_caf_state_dict(self, caf_state: Mapping[str, Tensor], zero_dense: bool = True) -> None:
        """Copy the weights of a plain CAF head (XingGAN) into this head.

        ``caf_state`` is the state dict of a head with the released layer order (ConvT, Norm,
        ConvT, Norm, ConvT; e.g. ``fusion.CoAttentionFusion``).  Entries are paired in order,
        whatever their names, and the last part of each name (``weight``, ``bias``,
        ``running_mean``, ...) and every shape must agree -- except the first ConvT weight of a
        dense head, whose first ``final_channels`` input rows receive the CAF weight.  With
        ``zero_dense`` the rows of the compressed stages are set to zero, so the dense head then
        predicts exactly the CAF head's maps until it is trained.  The stage compressions are
        left as they are.
        """
        own = self.head_state_dict()
        if len(own) != len(caf_state):
            raise ValueError(
                f"a CAF state with {len(own)} entries ({', '.join(own)}) was expected, got "
                f"{len(caf_state)} ({', '.join(caf_state)})"
            )
        new_state = {}
        for (name, mine), (their_name, theirs) in zip(own.items(), caf_state.items()):
            if name.rsplit(".", 1)[-1] != their_name.rsplit(".", 1)[-1]:
                raise ValueError(f"CAF entry {their_name!r} does not match entry {name!r}")
            if name == "up1.weight" and self.dense:
                expected = (self.final_channels,) + tuple(mine.shape[1:])
                if tuple(theirs.shape) != expected:
                    raise ValueError(
                        f"CAF entry {their_name!r} has shape {tuple(theirs.shape)}, expected "
                        f"{expected}")
                merged = mine.clone()
                merged[: self.final_channels] = theirs
                if zero_dense:
                    merged[self.final_channels:] = 0
                new_state[name] = merged
            elif theirs.shape != mine.shape:
                raise ValueError(
                    f"CAF entry {their_name!r} has shape {tuple(theirs.shape)}, entry {name!r} "
                    f"has {tuple(mine.shape)}")
            else:
                new_state[name] = theirs
        missing, unexpected = self.load_state_dict(new_state, strict=False)
        assert not unexpected and all(k.startswith("stage_compressions.") for k in missing)
