"""Image grids: source | source pose | target pose | generated | target, one pair per row."""
from __future__ import annotations

import numpy as np
import torch

# One colour per COCO-18 joint, for drawing pose heatmaps.
_JOINT_COLOURS = np.array([
    [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
    [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255],
    [0, 0, 255], [85, 0, 255], [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
], dtype=np.float32) / 255.0


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (B, 3, H, W) in [-1, 1] -> HWC / BHWC uint8, by truncation as released."""
    x = ((image.detach().float().clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def pose_image(heatmaps: torch.Tensor) -> np.ndarray:
    """(18, H, W) heatmaps -> an HWC uint8 picture with one colour per joint on black."""
    maps = heatmaps.detach().float().cpu().numpy()  # (18, H, W)
    colour = np.einsum("khw,kc->hwc", maps, _JOINT_COLOURS[: maps.shape[0]])
    return (np.clip(colour, 0, 1) * 255).astype(np.uint8)


def pair_grid(source: torch.Tensor, source_pose: torch.Tensor, target_pose: torch.Tensor,
              generated: torch.Tensor, target: torch.Tensor, gap: int = 2) -> np.ndarray:
    """A (rows * H, 5 * W) uint8 grid of a batch, with white gaps between tiles."""
    rows = []
    for i in range(source.shape[0]):
        tiles = [to_uint8(source[i]), pose_image(source_pose[i]), pose_image(target_pose[i]),
                 to_uint8(generated[i]), to_uint8(target[i])]
        h = tiles[0].shape[0]
        spacer = np.full((h, gap, 3), 255, np.uint8)
        row = [t for tile in tiles for t in (tile, spacer)][:-1]
        rows.append(np.concatenate(row, axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)
