"""Fréchet Inception Distance with either Inception network (TTUR / pytorch-fid arithmetic), and the
real-set statistics cached as npz per protocol, network, file list and size."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from ..progress import progress as progress_bar
from .weights import locate_weights

__all__ = ["TORCHVISION_INCEPTION_FILE", "frechet_distance", "RunningStatistics", "TorchvisionInception",
           "real_statistics", "statistics_cache_key", "default_cache_dir"]

TORCHVISION_INCEPTION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
TORCHVISION_INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); ``eps`` on the diagonals if singular."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"FID statistics disagree: means {mu1.shape} vs {mu2.shape}, "
                         f"covariances {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: sqrtm has a large imaginary component {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


class RunningStatistics:
    """Mean and covariance of features added batch by batch, from float64 sums around the first
    batch's mean (no digits lost to cancellation)."""

    def __init__(self) -> None:
        self.count = 0
        self._shift: Optional[np.ndarray] = None
        self._sum: Optional[np.ndarray] = None
        self._outer: Optional[np.ndarray] = None

    def add(self, features) -> None:
        x = np.asarray(features.cpu() if torch.is_tensor(features) else features, dtype=np.float64)
        if len(x) == 0:
            return
        if self._shift is None:
            self._shift = x.mean(axis=0)
            self._sum = np.zeros(x.shape[1])
            self._outer = np.zeros((x.shape[1], x.shape[1]))
        centred = x - self._shift
        self._sum += centred.sum(axis=0)
        self._outer += centred.T @ centred
        self.count += len(x)

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count < 2:
            raise ValueError(f"FID statistics need at least 2 images, got {self.count}")
        mean_centred = self._sum / self.count
        cov = (self._outer - self.count * np.outer(mean_centred, mean_centred)) / (self.count - 1)
        return self._shift + mean_centred, cov


class TorchvisionInception(torch.nn.Module):
    """torchvision Inception-v3 pool features as the GFLA-era FID code computed them: uint8
    ``(B, 3, H, W)`` -> float64 ``(B, 2048)``; ``random_init``: untrained, no weights file."""

    input_size = 299  # the resize target of the reference code

    def __init__(self, weights_path: Optional[str] = None, allow_download: bool = True,
                 random_init: bool = False):
        super().__init__()
        from torchvision.models import inception_v3  # torchvision takes seconds to import: only when built

        self.network = inception_v3(weights=None, aux_logits=True, transform_input=False,
                                    init_weights=False)
        if not random_init:
            path = locate_weights("torchvision Inception-v3 (GFLA-era FID)", TORCHVISION_INCEPTION_FILE,
                                  TORCHVISION_INCEPTION_URL, weights_path, allow_download, "--inception-weights")
            self.network.load_state_dict(torch.load(path, map_location="cpu"))
        self.network.eval().requires_grad_(False)
        self.register_buffer("scale", torch.tensor([s / 0.5 for s in _IMAGENET_STD]).view(1, 3, 1, 1))
        self.register_buffer("offset", torch.tensor([(m - 0.5) / 0.5 for m in _IMAGENET_MEAN]).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"TorchvisionInception expects uint8 (B, 3, H, W) images, got "
                             f"{images.dtype} {tuple(images.shape)}")
        x = images.to(torch.float32) / 255.0
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = x * self.scale + self.offset            # torchvision's transform_input, on [0, 1] values
        net = self.network
        for block in (net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1,
                      net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, net.maxpool2,
                      net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c,
                      net.Mixed_6d, net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, net.avgpool):
            x = block(x)
        return x.flatten(1).to(torch.float64).cpu()


def default_cache_dir() -> Path:
    """``$XINGGAN_CACHE`` or ``~/.cache/xinggan``, subfolder ``fid``."""
    root = os.environ.get("XINGGAN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "xinggan")
    return Path(root) / "fid"


def statistics_cache_key(protocol: str, network: str, names: Iterable[str], resolution: Sequence[int]) -> str:
    """Hex key of (protocol, network, sorted file names, resolution); the field ``"preset"`` keeps the
    keys of statistics cached on disk valid."""
    payload = json.dumps({"preset": protocol, "network": network, "files": sorted(names),
                          "resolution": list(resolution)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def real_statistics(paths: Sequence[Path], protocol: str, network: str, resolution: Sequence[int],
                    extract: Callable[[Sequence[Path]], torch.Tensor], batch_size: int = 64,
                    cache_dir: Optional[Path] = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the real images' features (``extract(paths)`` -> ``(B, 2048)``), cached as npz."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = statistics_cache_key(protocol, network, [Path(p).name for p in paths], resolution)
    height, width = resolution
    cache_file = cache_dir / f"real-{protocol}-{network}-{height}x{width}-{key[:16]}.npz"
    if cache_file.is_file():
        with np.load(cache_file) as stored:
            if str(stored["key"]) == key:
                return stored["mu"], stored["sigma"]
        warnings.warn(f"FID cache {cache_file} has a different key; recomputing it")
    running = RunningStatistics()
    batches = range(0, len(paths), batch_size)
    for start in progress_bar(batches, desc=f"FID real statistics ({network})", disable=not progress,
                              unit="batch"):
        running.add(extract(paths[start:start + batch_size]))
    mu, sigma = running.statistics()
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = cache_file.with_suffix(".tmp.npz")
    np.savez(temporary, mu=mu, sigma=sigma, key=key, count=running.count)
    os.replace(temporary, cache_file)
    return mu, sigma
