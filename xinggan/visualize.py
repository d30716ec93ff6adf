"""Image grids (source | source pose | target pose | generated | target, one pair per row) and
pose skeletons drawn from keypoints in the OpenPose colours (Cao et al., CVPR 2017); the limbs
and colours are :data:`xinggan.joints.SKELETON_LIMBS` and :data:`xinggan.joints.JOINT_COLOURS`.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from xinggan.joints import JOINT_COLOURS, SKELETON_LIMBS

# The joint colours in [0, 1], for drawing pose heatmaps.
_JOINT_COLOURS = np.array(JOINT_COLOURS, dtype=np.float32) / 255.0


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


def draw_skeleton(keypoints, height: int, width: int, background: np.ndarray | None = None,
                  thickness: int | None = None) -> np.ndarray:
    """An (H, W, 3) uint8 picture of ``keypoints`` ((K, 2) of (y, x), -1 missing) in the OpenPose colours,
    on black or over ``background`` with the limbs blended at 60 %; ``thickness``: 4 px per 256 rows."""
    kp = np.asarray(keypoints)
    if kp.ndim != 2 or kp.shape[1] != 2:
        raise ValueError(f"keypoints must have shape (K, 2) of (y, x), got {kp.shape}")
    thickness = max(1, round(4 * height / 256)) if thickness is None else thickness
    base = np.zeros((height, width, 3), np.uint8) if background is None else np.asarray(background, dtype=np.uint8)
    if base.shape != (height, width, 3):
        raise ValueError(f"background must be ({height}, {width}, 3), got {base.shape}")
    present, colours = (kp[:, 0] != -1) & (kp[:, 1] != -1), JOINT_COLOURS
    limbs = Image.fromarray(base.copy())
    draw = ImageDraw.Draw(limbs)
    for i, (a, b) in enumerate(SKELETON_LIMBS):
        if a < len(kp) and b < len(kp) and present[a] and present[b]:
            # Pixel centres: (y, x) -> PIL (x + 0.5, y + 0.5) in a continuous plane.
            draw.line([(kp[a, 1] + 0.5, kp[a, 0] + 0.5), (kp[b, 1] + 0.5, kp[b, 0] + 0.5)],
                      fill=colours[i % len(colours)], width=thickness)
    picture = limbs if background is None else Image.blend(Image.fromarray(base), limbs, 0.6)
    draw = ImageDraw.Draw(picture)
    r = max(1.0, thickness / 2 + 0.5)
    for j in np.flatnonzero(present):
        y, x = kp[j, 0] + 0.5, kp[j, 1] + 0.5
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colours[j % len(colours)])
    return np.asarray(picture, dtype=np.uint8).copy()
