"""Evaluation metrics of XingGAN and the later pose-transfer papers, each tied to a named reference.

One file per metric: :mod:`.ssim` (scikit-image 0.14.2 / current / window-51 SSIM, batched in
torch), :mod:`.mask` (the pose mask of mask-SSIM / mask-IS / mask-LPIPS), :mod:`.inception_score`
(TF-Inception IS via torch-fidelity), :mod:`.fid` (TF-Inception and torchvision-Inception FID),
:mod:`.lpips` (LPIPS AlexNet v0.1), :mod:`.psnr`, :mod:`.pckh`, :mod:`.l1`; the protocols that
chain them in :mod:`.protocols` and the weights files of their networks in :mod:`.weights`.

Scoring a folder (:func:`evaluate_folder`, :mod:`.evaluate`): :mod:`.layouts` and :mod:`.inputs`
(which files, checked and read in batches), :mod:`.plan` (which metrics run, with which networks),
:mod:`.accumulators` (one per metric), :mod:`.report` (``metrics.json`` / ``metrics.md``).
"""
from .accumulators import Accumulator
from .evaluate import evaluate_folder
from .fid import RunningStatistics, TorchvisionInception, feature_statistics, frechet_distance
from .inception_score import TFInception, inception_score_from_logits
from .inputs import EvaluationInputError, EvaluationInputs, resolve_inputs
from .l1 import l1_distance
from .lpips import LPIPSAlex
from .mask import MASK_LIMBS, pose_mask, pose_masks
from .pckh import pckh, pckh_pair
from .plan import MetricPlan, MetricUnavailable, plan_metrics, select_metrics
from .protocols import (ALL_METRICS, PROTOCOLS, Protocol, get_protocol, jpeg_roundtrip, pad_white_columns,
                        released_8bit)
from .psnr import psnr
from .report import METRIC_LABELS, format_table, report_missing_metrics, write_metrics
from .ssim import GFLA_SSIM, PATN_SSIM, SKIMAGE_SSIM, SSIMSettings, ssim
from .weights import MetricWeights, WeightsUnavailable

__all__ = [
    "ALL_METRICS", "Accumulator", "EvaluationInputError", "EvaluationInputs", "GFLA_SSIM", "LPIPSAlex",
    "MASK_LIMBS", "METRIC_LABELS", "MetricPlan", "MetricUnavailable", "MetricWeights", "PATN_SSIM", "PROTOCOLS",
    "Protocol", "RunningStatistics", "SKIMAGE_SSIM", "SSIMSettings", "TFInception", "TorchvisionInception",
    "WeightsUnavailable", "evaluate_folder", "feature_statistics", "format_table", "frechet_distance",
    "get_protocol", "inception_score_from_logits", "jpeg_roundtrip", "l1_distance", "pad_white_columns",
    "pckh", "pckh_pair", "plan_metrics", "pose_mask", "pose_masks", "psnr", "released_8bit",
    "report_missing_metrics", "resolve_inputs", "select_metrics", "ssim", "write_metrics",
]
