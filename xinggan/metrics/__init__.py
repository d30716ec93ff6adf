"""Evaluation metrics of XingGAN and the later pose-transfer papers, each tied to a named reference.

One file per metric: :mod:`.ssim` (scikit-image 0.14.2 / current / window-51 SSIM, batched in
torch), :mod:`.mask` (the pose mask of mask-SSIM / mask-IS / mask-LPIPS), :mod:`.inception_score`
(TF-Inception IS via torch-fidelity), :mod:`.fid` (TF-Inception and torchvision-Inception FID),
:mod:`.lpips` (LPIPS AlexNet v0.1), :mod:`.psnr`, :mod:`.pckh`, :mod:`.l1`; the presets that chain
them in :mod:`.protocols`; folder scoring in :mod:`.evaluate`.
"""
from .evaluate import EvaluationInputError, MetricUnavailable, evaluate_folder, format_table, write_metrics
from .fid import RunningStatistics, TorchvisionInception, feature_statistics, frechet_distance
from .inception_score import TFInception, inception_score_from_logits
from .l1 import l1_distance
from .lpips import LPIPSAlex
from .mask import MASK_LIMBS, pose_mask, pose_masks
from .pckh import pckh, pckh_pair
from .protocols import (ALL_METRICS, PROTOCOLS, Protocol, get_protocol, jpeg_roundtrip, pad_white_columns,
                        released_8bit)
from .psnr import psnr
from .ssim import GFLA_SSIM, PATN_SSIM, SKIMAGE_SSIM, SSIMSettings, ssim
from .weights import MetricWeights, WeightsUnavailable

__all__ = [
    "ALL_METRICS", "EvaluationInputError", "GFLA_SSIM", "LPIPSAlex", "MASK_LIMBS", "MetricUnavailable",
    "MetricWeights", "PATN_SSIM", "PROTOCOLS", "Protocol", "RunningStatistics", "SKIMAGE_SSIM",
    "SSIMSettings", "TFInception", "TorchvisionInception", "WeightsUnavailable", "evaluate_folder",
    "feature_statistics", "format_table", "frechet_distance", "get_protocol", "inception_score_from_logits",
    "jpeg_roundtrip", "l1_distance", "pad_white_columns", "pckh", "pckh_pair", "pose_mask", "pose_masks",
    "psnr", "released_8bit", "ssim", "write_metrics",
]
