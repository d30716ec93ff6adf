"""Structural similarity (SSIM), batched in torch, reproducing scikit-image to float64 rounding.

Settings: :data:`PATN_SSIM` (scikit-image 0.14.2, 13 taps), :data:`SKIMAGE_SSIM` (current, 11 taps),
:data:`GFLA_SSIM` (51 x 51 uniform window). Each separable filter is a dense matrix applied by matrix
products; derivation and reference calls in docs/data_and_metrics.md.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Union

import numpy as np
import torch

__all__ = ["SSIMSettings", "PATN_SSIM", "SKIMAGE_SSIM", "GFLA_SSIM", "SSIM_SETTINGS", "ssim", "gaussian_taps",
           "filter_operator"]


@dataclass(frozen=True)
class SSIMSettings:
    """One SSIM recipe: a ``'gaussian'`` window (taps of ``sigma``, ``truncate``; ``win_size`` sets only the
    crop and covariance factor) or a ``'uniform'`` box; ``data_range``: a number or ``'generated'`` (max - min)."""

    name: str
    window: str = "gaussian"
    sigma: float = 1.5
    truncate: float = 4.0
    win_size: int = 11
    use_sample_covariance: bool = False
    data_range: Union[float, str] = "generated"
    K1: float = 0.01
    K2: float = 0.03

    def __post_init__(self) -> None:
        if self.win_size % 2 != 1:
            raise ValueError(f"SSIMSettings.win_size must be odd, got {self.win_size}")

    @property
    def radius(self) -> int:
        return int(self.truncate * self.sigma + 0.5) if self.window == "gaussian" else self.win_size // 2

    @property
    def taps(self) -> int:
        return 2 * self.radius + 1

    @property
    def crop(self) -> int:
        """Pixels ignored at every border before averaging the SSIM map."""
        return (self.win_size - 1) // 2

    @property
    def cov_norm(self) -> float:
        n = self.win_size ** 2
        return n / (n - 1) if self.use_sample_covariance else 1.0

    def taps_1d(self) -> np.ndarray:
        if self.window == "gaussian":
            return gaussian_taps(self.sigma, self.radius)
        return np.full(self.win_size, 1.0 / self.win_size)


# scikit-image 0.14.2 as called by the PATN/XingGAN scripts: 13 taps (scipy truncate=4.0), crop 5.
PATN_SSIM = SSIMSettings(name="skimage-0.14.2 gaussian (13 taps)", truncate=4.0)
# Current scikit-image structural_similarity with the same arguments: 11 taps (truncate=3.5), crop 5.
SKIMAGE_SSIM = SSIMSettings(name="skimage>=0.19 gaussian (11 taps)", truncate=3.5)
# GFLA-era compare_ssim(gt, pred, data_range=1, win_size=51, multichannel=True) on [0, 1] floats.
GFLA_SSIM = SSIMSettings(
    name="uniform 51x51 window", window="uniform", win_size=51, use_sample_covariance=True, data_range=1.0
)
# By name, as the protocols of xinggan.metric_registry give them.
SSIM_SETTINGS = {s.name: s for s in (PATN_SSIM, SKIMAGE_SSIM, GFLA_SSIM)}


def gaussian_taps(sigma: float, radius: int) -> np.ndarray:
    """Normalised 1-D Gaussian taps of ``scipy.ndimage.gaussian_filter1d`` (order 0)."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * x * x)
    return phi / phi.sum()


def _reflect_index(j: int, n: int) -> int:
    # scipy.ndimage mode='reflect' (half-sample symmetric), valid for any offset.
    j %= 2 * n
    return 2 * n - 1 - j if j >= n else j


@lru_cache(maxsize=64)
def _operator_cached(n: int, taps: tuple, crop: int) -> torch.Tensor:
    radius = len(taps) // 2
    rows = n - 2 * crop
    op = np.zeros((rows, n), dtype=np.float64)
    for i in range(rows):
        centre = i + crop
        for k, w in enumerate(taps):
            op[i, _reflect_index(centre + k - radius, n)] += w
    return torch.from_numpy(op)


def filter_operator(n: int, settings: SSIMSettings) -> torch.Tensor:
    """(n - 2 crop, n) float64 matrix: the 1-D filter with reflect borders, cropped rows only."""
    if n - 2 * settings.crop <= 0:
        raise ValueError(f"image side {n} is too small for a {settings.crop}-pixel crop on each border")
    return _operator_cached(n, tuple(settings.taps_1d().tolist()), settings.crop)


@lru_cache(maxsize=64)
def _row_blocks_cached(n: int, taps: tuple, crop: int) -> tuple:
    """The operator cut into bands of output rows, each with the input rows it touches."""
    op = _operator_cached(n, taps, crop)
    rows = op.shape[0]
    count = max(1, rows // max(len(taps) - 1, 24))
    edges = np.linspace(0, rows, count + 1).round().astype(int)
    blocks = []
    for first, last in zip(edges[:-1], edges[1:]):
        used = torch.nonzero(op[first:last].abs().sum(dim=0)).flatten()
        lo, hi = int(used.min()), int(used.max()) + 1
        blocks.append((int(first), int(last), lo, hi, op[first:last, lo:hi].contiguous()))
    return tuple(blocks)


def _ssim_chunk(x: torch.Tensor, y: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor,
                op_w_t: torch.Tensor, row_blocks: tuple, h_out: int, cov_norm: float) -> torch.Tensor:
    b, c, h, w = x.shape
    w_out = op_w_t.shape[1]
    # Four filtered maps suffice (SSIM uses vx + vy only): E[x], E[y], E[x^2 + y^2], E[xy], rows first.
    maps = torch.empty((h, 4, b, c, w), dtype=torch.float64, device=x.device)
    view = maps.permute(1, 2, 3, 0, 4)                                        # (4, B, C, H, W)
    xd, yd = view[0].copy_(x), view[1].copy_(y)
    view[2].copy_(xd * xd).addcmul_(yd, yd)
    view[3].copy_(xd * yd)
    cols = (maps.reshape(-1, w) @ op_w_t).reshape(h, -1)                      # (H, 4BCW'), columns filtered
    filt = torch.empty((h_out, cols.shape[1]), dtype=torch.float64, device=x.device)
    for first, last, lo, hi, band in row_blocks:                              # rows filtered, band by band
        torch.mm(band, cols[lo:hi], out=filt[first:last])
    ux, uy, usq, uxy = filt.reshape(h_out, 4, b, c, w_out).unbind(1)          # each (H', B, C, W')
    c1, c2 = c1.reshape(1, b, 1, 1), c2.reshape(1, b, 1, 1)
    # S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2)),
    # vxy = n (uxy - ux uy), vx + vy = n (usq - ux^2 - uy^2), n = cov_norm.
    a1 = torch.addcmul(c1, ux, uy, value=2.0)                                 # 2 ux uy + C1
    squares = torch.mul(ux, ux).addcmul_(uy, uy)                              # ux^2 + uy^2
    if cov_norm == 1.0:
        a2 = uxy.mul_(2.0).add_(c2).addcmul_(ux, uy, value=-2.0)              # 2 vxy + C2
        b2 = usq.sub_(squares).add_(c2)                                       # vx + vy + C2
    else:
        a2 = uxy.addcmul_(ux, uy, value=-1.0).mul_(2.0 * cov_norm).add_(c2)
        b2 = usq.sub_(squares).mul_(cov_norm).add_(c2)
    b1 = squares.add_(c1)                                                     # ux^2 + uy^2 + C1
    return a1.mul_(a2).div_(b1.mul_(b2)).mean(dim=(0, 3)).mean(dim=1)        # (B,)


_EXECUTORS: dict = {}
_EXECUTORS_LOCK = threading.Lock()


def _executor(workers: int) -> ThreadPoolExecutor:
    """A persistent pool per worker count (new threads would redo their BLAS set-up)."""
    with _EXECUTORS_LOCK:
        if workers not in _EXECUTORS:
            _EXECUTORS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ssim-worker")
        return _EXECUTORS[workers]


def ssim(generated: torch.Tensor, target: torch.Tensor, settings: Union[SSIMSettings, str] = PATN_SSIM,
         chunk: int = 8, workers: Optional[int] = None) -> torch.Tensor:
    """Per-pair float64 ``(B,)`` SSIM of ``(B, C, H, W)`` (or ``(C, H, W)``) batches, values used as given.

    Runs in chunks of ``chunk`` pairs; on the CPU they go to ``workers`` threads (default torch's count),
    each single-threaded (OpenMP teams stall on shared cores); torch's thread count is restored after.
    """
    if isinstance(settings, str):
        settings = SSIM_SETTINGS[settings]
    if generated.shape != target.shape:
        raise ValueError(f"SSIM needs equal shapes, got generated {tuple(generated.shape)} "
                         f"and target {tuple(target.shape)}")
    if generated.dim() == 3:
        return ssim(generated[None], target[None], settings, chunk, workers)
    if generated.dim() != 4:
        raise ValueError(f"SSIM expects (B, C, H, W) tensors, got shape {tuple(generated.shape)}")
    b, _, h, w = generated.shape
    if min(h, w) < settings.win_size:
        raise ValueError(f"SSIM window {settings.win_size} exceeds the image extent {h} x {w}")
    device = generated.device
    target = target.to(device)
    op_w_t = filter_operator(w, settings).T.contiguous().to(device)
    taps = tuple(settings.taps_1d().tolist())
    row_blocks = tuple((first, last, lo, hi, band.to(device))
                       for first, last, lo, hi, band in _row_blocks_cached(h, taps, settings.crop))
    workers = torch.get_num_threads() if workers is None else workers
    parallel = device.type == "cpu" and workers >= 1

    def score(start: int) -> torch.Tensor:
        if parallel:
            torch.set_num_threads(1)  # as well, where a thread keeps its own setting
        x, y = generated[start:start + chunk], target[start:start + chunk]
        if settings.data_range == "generated":
            flat = x.reshape(x.shape[0], -1)
            ranges = flat.amax(dim=1).to(torch.float64) - flat.amin(dim=1).to(torch.float64)
        else:
            ranges = torch.full((x.shape[0],), float(settings.data_range), dtype=torch.float64, device=device)
        c1, c2 = (settings.K1 * ranges) ** 2, (settings.K2 * ranges) ** 2
        return _ssim_chunk(x, y, c1, c2, op_w_t, row_blocks, h - 2 * settings.crop, settings.cov_norm)

    starts = range(0, b, chunk)
    if not parallel:
        scores = [score(start) for start in starts]
    else:
        previous = torch.get_num_threads()  # process-wide: the caller's setting comes back after
        torch.set_num_threads(1)
        try:
            scores = list(_executor(workers).map(score, starts))
        finally:
            torch.set_num_threads(previous)
    return torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float64, device=device)
