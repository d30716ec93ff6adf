"""Every metric, every evaluation protocol and the papers' reported numbers, as plain data (standard
library only), read by the config, the evaluation, its reports and the tables (docs/data_and_metrics.md).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from xinggan.hints import closest

__all__ = ["Metric", "METRICS", "TABLE_ORDER", "Protocol", "PROTOCOLS", "get_protocol", "PAPER_RESULTS",
           "DATASET_SIZES"]


@dataclass(frozen=True)
class Metric:
    """One metric: key in ``metrics.json``, label, ``'higher'`` / ``'lower'`` better, its accumulator class,
    ``needs`` (target / generated keypoints, real images, inception splits) and ``network``."""

    name: str
    label: str
    better: str
    accumulator: str
    masked: bool = False
    needs: tuple = ()
    network: str = ""


# In the order of metrics.json.
METRICS = {metric.name: metric for metric in (
    Metric("ssim", "SSIM", "higher", "SSIMAccumulator"),
    Metric("mask_ssim", "mask-SSIM", "higher", "SSIMAccumulator", masked=True, needs=("target_keypoints",)),
    Metric("lpips", "LPIPS", "lower", "LPIPSAccumulator", network="alexnet"),
    Metric("mask_lpips", "mask-LPIPS", "lower", "LPIPSAccumulator", masked=True, needs=("target_keypoints",),
           network="alexnet"),
    Metric("psnr", "PSNR", "higher", "PSNRAccumulator"),
    Metric("l1", "L1", "lower", "L1Accumulator"),
    Metric("is", "IS", "higher", "InceptionScoreAccumulator", needs=("inception_splits",), network="tf-inception"),
    Metric("mask_is", "mask-IS", "higher", "InceptionScoreAccumulator", masked=True,
           needs=("target_keypoints", "inception_splits"), network="tf-inception"),
    Metric("fid", "FID", "lower", "FIDAccumulator", needs=("real_images",), network="fid-network"),
    Metric("pckh", "PCKh", "higher", "PCKhAccumulator", needs=("target_keypoints", "generated_keypoints")),
)}
# Column order of tables: XingGAN's Table 1 (SSIM, IS, mask-SSIM, mask-IS, PCKh), then the later metrics.
TABLE_ORDER = ("ssim", "is", "mask_ssim", "mask_is", "pckh", "fid", "lpips", "mask_lpips", "psnr", "l1")


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: the default metrics and the settings every metric runs with."""

    name: str
    dataset: str                  # 'market', 'deepfashion' or 'any'
    default_metrics: tuple
    jpeg_roundtrip: bool          # the released pipeline's 8-bit truncation and JPEG q75 round trip
    pad_columns: int              # white columns added on each side before SSIM and IS
    ssim: str                     # name of the SSIM settings (xinggan.metrics.ssim.SSIM_SETTINGS)
    ssim_input: str               # 'uint8': values 0..255; 'unit': float32(uint8) / 255
    fid_network: str              # 'tf-inception' (torch-fidelity) or 'torchvision'
    image_size: Optional[tuple]   # (H, W) every image must have; None: any (pairs must agree)
    description: str


_PATN_SSIM = "skimage-0.14.2 gaussian (13 taps)"
PROTOCOLS = {protocol.name: protocol for protocol in (
    Protocol(name="patn-market", dataset="market", default_metrics=("ssim", "mask_ssim", "is", "mask_is", "pckh"),
             jpeg_roundtrip=True, pad_columns=0, ssim=_PATN_SSIM, ssim_input="uint8", fid_network="tf-inception",
             image_size=(128, 64),
             description="PATN/XingGAN Market-1501 protocol (JPEG q75 round trip, skimage-0.14.2 SSIM, "
                         "TF-Inception IS, pose-masked SSIM/IS, PCKh)"),
    Protocol(name="patn-deepfashion", dataset="deepfashion", default_metrics=("ssim", "is", "pckh"),
             jpeg_roundtrip=True, pad_columns=40, ssim=_PATN_SSIM, ssim_input="uint8", fid_network="tf-inception",
             image_size=(256, 176),
             description="PATN/XingGAN DeepFashion protocol (JPEG q75 round trip, 40 white columns per "
                         "side before SSIM and IS, skimage-0.14.2 SSIM, TF-Inception IS, PCKh)"),
    Protocol(name="gfla", dataset="any", default_metrics=("fid", "lpips", "ssim", "psnr", "mask_lpips"),
             jpeg_roundtrip=False, pad_columns=0, ssim="uniform 51x51 window", ssim_input="unit",
             fid_network="torchvision", image_size=None,
             description="GFLA-era protocol (torchvision-Inception FID against a real set, LPIPS AlexNet "
                         "v0.1, SSIM with a 51x51 uniform window, PSNR, mask-LPIPS on Market)"),
)}
# The demo's protocol: patn-market's settings at any image size; no paper's protocol.
PROTOCOLS["toy"] = replace(
    PROTOCOLS["patn-market"], name="toy", dataset="any", default_metrics=("ssim", "mask_ssim", "l1"), image_size=None,
    description="the patn-market settings (JPEG q75 round trip, skimage-0.14.2 SSIM, pose-masked "
                "SSIM) at any image size, for the toy dataset of the demo; not a paper protocol")

# The papers' reported values, transcribed by hand (sources in docs/data_and_metrics.md), not
# recomputed here. Per protocol: (method, dataset, values).
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


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; an unknown name is an error listing the protocols."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        hint = closest(name, PROTOCOLS)
        nearest = f"did you mean {hint!r}? " if hint else ""
        raise ValueError(f"unknown evaluation protocol {name!r}; {nearest}choose one of {sorted(PROTOCOLS)}") from None
