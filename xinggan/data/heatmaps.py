"""Pose heatmaps, XingGAN's shape-branch input (Sec. 3.1): one Gaussian channel (sigma 6, peak 1)
per joint as PATN's ``cords_to_map``, all zeros for a missing joint.
"""
from __future__ import annotations

import torch

from .annotations import MISSING

__all__ = ["pose_heatmaps"]


def pose_heatmaps(keypoints, height: int, width: int, sigma: float = 6.0) -> torch.Tensor:
    """Gaussian heatmaps (..., K, height, width), float32, of keypoints (..., K, 2) of (y, x).

    ``keypoints``: an array or tensor of pixel coordinates; a joint with y or x equal to -1 gives
    an all-zero channel. The result is on the keypoints' device; nothing is read back to the host.
    """
    kp = torch.as_tensor(keypoints)
    if kp.dim() < 2 or kp.shape[-1] != 2:
        raise ValueError(f"keypoints must have shape (..., K, 2) of (y, x), got {tuple(kp.shape)}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    kp = kp.to(torch.float64)
    present = (kp != MISSING).all(-1, keepdim=True)  # (..., K, 1)
    denom = 2.0 * float(sigma) ** 2
    rows = torch.arange(height, dtype=torch.float64, device=kp.device)
    cols = torch.arange(width, dtype=torch.float64, device=kp.device)
    # exp(-(dy^2 + dx^2) / 2s^2) = exp(-dy^2 / 2s^2) * exp(-dx^2 / 2s^2): separable.
    row_profile = torch.exp(-((rows - kp[..., :1]) ** 2) / denom)  # (..., K, H)
    col_profile = torch.exp(-((cols - kp[..., 1:]) ** 2) / denom)  # (..., K, W)
    row_profile = torch.where(present, row_profile, 0.0)
    return row_profile.float()[..., :, None] * col_profile.float()[..., None, :]
