"""Densely connected co-attention fusion of XingGAN++ (our reading; without stages: XingGAN's
CAF head, layer for layer).  Each Xing block's codes, compressed by a 1x1 conv, join the final
codes at the head's input.  Details: ``docs/xingganpp.md``, section 3.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from xinggan.models.fusion import CoAttentionFusion


class DenseCoAttentionFusion(CoAttentionFusion):
    """CAF head whose input also holds every block's compressed codes (``block_channels``:
    the (appearance, shape) widths of blocks 1..T; empty: XingGAN's CAF head)."""

    def __init__(self, appearance_channels: int, shape_channels: int, ngf: int, norm: str,
                 num_candidates: int, block_channels: Sequence[tuple[int, int]] = (),
                 dense_channels: int = 32) -> None:
        final_channels = appearance_channels + shape_channels
        in_channels = final_channels + len(block_channels) * dense_channels
        super().__init__(in_channels, ngf, norm, num_candidates)  # up1 ... to_maps, as released
        self.final_channels = final_channels
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

    def head_state_dict(self) -> dict[str, Tensor]:
        """The state of the CAF layers only (``up1`` ... ``to_maps``), in layer order."""
        return {k: v for k, v in self.state_dict().items()
                if not k.startswith("stage_compressions.")}

    @torch.no_grad()
    def load_caf_state_dict(self, caf_state: Mapping[str, Tensor], zero_dense: bool = True) -> None:
        """Copy a plain CAF head's weights (paired in layer order) into this head; the first
        ConvT gets them in its first ``final_channels`` rows, the stage rows zero with
        ``zero_dense`` (the head then predicts the CAF maps)."""
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
