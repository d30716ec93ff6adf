"""Evaluation protocols: the PATN protocol of the XingGAN paper and the later GFLA-era protocol.

``patn-market`` / ``patn-deepfashion`` reproduce, step by step, what the released PATN/XingGAN
scripts did (``tool/getMetrics_market.py``, ``getMetrics_fashion.py``, ``calPCKH_*.py``):

1. the test script turned every image tensor in [-1, 1] into 8 bits by truncation
   (``uint8((x + 1) / 2 * 255)``, :func:`xinggan.visualize.to_uint8`) and saved it as JPEG at PIL's default
   quality 75; every metric read the decoded JPEGs, targets included. The target had been loaded
   from its dataset JPEG, normalised to [-1, 1] in float32 and truncated back, which turns the
   values 1..63 into 0..62 (:func:`released_8bit`). With the round trip on (the default for these
   protocols; a switch turns it off) targets get :func:`released_8bit` then :func:`jpeg_roundtrip`;
   generated PNGs (assumed to hold the truncated 8-bit output) get :func:`jpeg_roundtrip`;
   generated JPEGs are taken as already saved by step 1. (The released script saved each pair as
   one concatenated image, so the decoder's chroma upsampling also mixed a pixel or two across
   panel borders; that is not reproduced.)
2. DeepFashion only: 40 white columns are added on each side (256 x 176 -> 256 x 256) before
   SSIM and IS (:func:`pad_white_columns`);
3. SSIM as scikit-image 0.14.2 computed it (:data:`~xinggan.metrics.ssim.PATN_SSIM`), mask-SSIM
   with the target pose mask, IS / mask-IS with TensorFlow's 2015 Inception, PCKh from a keypoint
   CSV.

``gfla`` is the protocol of GFLA, PISE, DPTN, NTED, PIDM and CFLD: FID with torchvision's
Inception against a real image set, LPIPS (AlexNet, v0.1), SSIM with a 51 x 51 uniform window,
PSNR, and mask-LPIPS on Market. No JPEG round trip.

``toy`` applies the ``patn-market`` settings at any image size (the demo's 64 x 32 toy data);
it is no paper's protocol.

``l1`` (mean absolute error in [-1, 1]) is available in every protocol, as are the metrics of the
other protocols; a protocol fixes the defaults and the settings (SSIM window, FID network), and its
name is printed beside every number.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch
from PIL import Image

from ..hints import closest
from .ssim import GFLA_SSIM, PATN_SSIM, SSIMSettings

__all__ = [
    "ALL_METRICS",
    "Protocol",
    "PROTOCOLS",
    "PAPER_RESULTS",
    "get_protocol",
    "jpeg_roundtrip",
    "pad_white_columns",
    "released_8bit",
    "JPEG_QUALITY",
]

ALL_METRICS = ("ssim", "mask_ssim", "is", "mask_is", "fid", "lpips", "mask_lpips", "psnr", "pckh", "l1")
JPEG_QUALITY = 75  # PIL's default, what Image.save(path.jpg) used in the released test code


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol."""

    name: str
    dataset: str                       # 'market' or 'deepfashion' (or 'any')
    default_metrics: tuple
    jpeg_roundtrip: bool               # step 1 of the PATN protocol
    pad_columns: int                   # white columns added on each side before SSIM and IS
    ssim: SSIMSettings
    ssim_input: str                    # 'uint8': values 0..255; 'unit': float32(uint8) / 255
    fid_network: str                   # 'tf-inception' (torch-fidelity) or 'torchvision'
    image_size: Optional[tuple]        # (H, W) every image must have, None: any (pairs must agree)
    description: str


PROTOCOLS = {
    "patn-market": Protocol(
        name="patn-market",
        dataset="market",
        default_metrics=("ssim", "mask_ssim", "is", "mask_is", "pckh"),
        jpeg_roundtrip=True,
        pad_columns=0,
        ssim=PATN_SSIM,
        ssim_input="uint8",
        fid_network="tf-inception",
        image_size=(128, 64),
        description="PATN/XingGAN Market-1501 protocol (JPEG q75 round trip, skimage-0.14.2 SSIM, "
                    "TF-Inception IS, pose-masked SSIM/IS, PCKh)",
    ),
    "patn-deepfashion": Protocol(
        name="patn-deepfashion",
        dataset="deepfashion",
        default_metrics=("ssim", "is", "pckh"),
        jpeg_roundtrip=True,
        pad_columns=40,
        ssim=PATN_SSIM,
        ssim_input="uint8",
        fid_network="tf-inception",
        image_size=(256, 176),
        description="PATN/XingGAN DeepFashion protocol (JPEG q75 round trip, 40 white columns per "
                    "side before SSIM and IS, skimage-0.14.2 SSIM, TF-Inception IS, PCKh)",
    ),
    "gfla": Protocol(
        name="gfla",
        dataset="any",
        default_metrics=("fid", "lpips", "ssim", "psnr", "mask_lpips"),
        jpeg_roundtrip=False,
        pad_columns=0,
        ssim=GFLA_SSIM,
        ssim_input="unit",
        fid_network="torchvision",
        image_size=None,
        description="GFLA-era protocol (torchvision-Inception FID against a real set, LPIPS AlexNet "
                    "v0.1, SSIM with a 51x51 uniform window, PSNR, mask-LPIPS on Market)",
    ),
}
# The demo's protocol: patn-market's settings (JPEG round trip, SSIM) at any image size.
PROTOCOLS["toy"] = replace(
    PROTOCOLS["patn-market"], name="toy", dataset="any",
    default_metrics=("ssim", "mask_ssim", "l1"), image_size=None,
    description="the patn-market settings (JPEG q75 round trip, skimage-0.14.2 SSIM, pose-masked "
                "SSIM) at any image size, for the toy dataset of the demo; not a paper protocol")

# Reported values, transcribed by hand from the papers' tables (listed in docs/data_and_metrics.md,
# "Reported numbers"); they are the papers' numbers, not ours. Per protocol: (method, dataset, values).
PAPER_RESULTS = {
    "patn-market": [
        ("PATN (paper)", "market", {"ssim": 0.311, "is": 3.323, "mask_ssim": 0.811, "mask_is": 3.773}),
        ("XingGAN (paper)", "market", {"ssim": 0.313, "is": 3.506, "mask_ssim": 0.816, "mask_is": 3.872,
                                       "pckh": 0.93}),
    ],
    "patn-deepfashion": [
        ("PATN (paper)", "deepfashion", {"ssim": 0.773, "is": 3.209}),
        ("XingGAN (paper)", "deepfashion", {"ssim": 0.778, "is": 3.476, "pckh": 0.95}),
    ],
    "gfla": [
        ("NTED (paper)", "deepfashion", {"fid": 8.68, "lpips": 0.175}),
        ("PIDM (paper)", "deepfashion", {"fid": 6.37, "lpips": 0.168, "ssim": 0.731}),
        ("CFLD (paper)", "deepfashion", {"fid": 6.80, "lpips": 0.152, "ssim": 0.738}),
    ],
}
DATASET_SIZES = {(128, 64): "market", (256, 176): "deepfashion"}

# Column order of the paper's Table 1 (Market: SSIM, IS, mask-SSIM, mask-IS, PCKh; DeepFashion:
# SSIM, IS, PCKh), then the later metrics.
TABLE_ORDER = ("ssim", "is", "mask_ssim", "mask_is", "pckh", "fid", "lpips", "mask_lpips", "psnr", "l1")


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; an unknown name is an error listing the protocols."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        hint = closest(name, PROTOCOLS)
        nearest = f"did you mean {hint!r}? " if hint else ""
        raise ValueError(f"unknown evaluation protocol {name!r}; {nearest}choose one of {sorted(PROTOCOLS)}") from None


def _released_8bit_table() -> np.ndarray:
    # ToTensor (u / 255) and Normalize(0.5, 0.5) in float32, then tensor2im's (x + 1) / 2 * 255
    # in float32 numpy and astype(uint8).
    x = torch.arange(256, dtype=torch.float32).div(255)
    x = x.sub(0.5).div(0.5).numpy()
    return ((x + 1) / 2.0 * 255.0).astype(np.uint8)


_RELEASED_8BIT = _released_8bit_table()


def released_8bit(images: np.ndarray) -> np.ndarray:
    """What the released test pipeline made of a uint8 dataset image: normalise, truncate back."""
    return _RELEASED_8BIT[images]


def jpeg_roundtrip(images: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """Encode each uint8 ``(B, H, W, 3)`` image as PIL JPEG at ``quality`` and decode it again."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded.convert("RGB"))
    return out


def pad_white_columns(images: np.ndarray, columns: int) -> np.ndarray:
    """Add ``columns`` white (255) columns on each side of uint8 ``(B, H, W, C)`` images."""
    if columns == 0:
        return images
    return np.pad(images, ((0, 0), (0, 0), (columns, columns), (0, 0)), constant_values=255)
