"""Mean absolute error in the generator's [-1, 1] space (twice GFLA's ``compare_l1`` on [0, 1])."""
from __future__ import annotations

import torch

__all__ = ["l1_distance", "to_signed_unit"]


def to_signed_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (``x / 127.5 - 1``)."""
    return images.to(torch.float32) / 127.5 - 1.0


def l1_distance(generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pair mean absolute difference (float64 ``(B,)``) of two ``(B, C, H, W)`` batches in [-1, 1]."""
    diff = generated.to(torch.float64) - target.to(device=generated.device, dtype=torch.float64)
    return diff.abs().flatten(1).mean(dim=1)
