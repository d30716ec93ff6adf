"""Pose heatmaps: the shape-branch input of XingGAN (Sec. 3.1; 18 channels per pose).

One Gaussian channel per OpenPose joint, exactly as the released code's precomputed ``.npy``
maps (PATN's ``cords_to_map``): ``exp(-((y - y_k)^2 + (x - x_k)^2) / (2 sigma^2))`` on the
integer pixel grid with sigma = 6, peak 1 at the joint, an all-zero channel for a missing joint.
Joints outside the frame (DeepFashion x from -31 to 205) keep their Gaussian, which is then
partly or wholly outside the map. We compute the maps on the fly: the 2-D Gaussian is the outer
product of a row profile and a column profile, so one pose costs 18 x (H + W) exponentials.
"""
from __future__ import annotations

import numpy as np
import torch

from .annotations import MISSING

__all__ = ["pose_heatmaps"]


def pose_heatmaps(keypoints, height: int, width: int, sigma: float = 6.0) -> torch.Tensor:
    """Gaussian heatmaps of shape (K, height, width), float32, for keypoints (K, 2) of (y, x).

    ``keypoints`` is an array or tensor of pixel coordinates, rows (y, x); a joint with y or x
    equal to -1 gives an all-zero channel.
    """
    kp = np.asarray(keypoints.cpu() if isinstance(keypoints, torch.Tensor) else keypoints)
    if kp.ndim != 2 or kp.shape[1] != 2:
        raise ValueError(f"keypoints must have shape (K, 2) of (y, x), got {kp.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    kp = kp.astype(np.float64)
    present = ~((kp[:, 0] == MISSING) | (kp[:, 1] == MISSING))
    denom = 2.0 * float(sigma) ** 2
    rows = np.arange(height, dtype=np.float64)
    cols = np.arange(width, dtype=np.float64)
    # exp(-(dy^2 + dx^2) / 2s^2) = exp(-dy^2 / 2s^2) * exp(-dx^2 / 2s^2): separable.
    row_profile = np.exp(-((rows[None, :] - kp[:, :1]) ** 2) / denom)  # (K, H)
    col_profile = np.exp(-((cols[None, :] - kp[:, 1:]) ** 2) / denom)  # (K, W)
    row_profile[~present] = 0.0
    row_t = torch.from_numpy(row_profile.astype(np.float32))
    col_t = torch.from_numpy(col_profile.astype(np.float32))
    return row_t[:, :, None] * col_t[:, None, :]
