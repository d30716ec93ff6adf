"""PSNR with data range 1 on ``float32(uint8) / 255``, as GFLA's ``compare_psnr``; identical images give inf."""
from __future__ import annotations

import torch

__all__ = ["psnr"]


def psnr(generated: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-pair PSNR (float64 ``(B,)``) of two ``(B, C, H, W)`` batches with values in [0, data_range]."""
    diff = generated.to(torch.float64) - target.to(device=generated.device, dtype=torch.float64)
    mse = diff.pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range ** 2 / mse)
