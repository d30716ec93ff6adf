"""Score a folder of generated images against the targets under one evaluation protocol.

``evaluate_folder`` runs in three stages:

1. inputs (:mod:`xinggan.metrics.inputs`): the folder's layout (:mod:`xinggan.metrics.layouts`:
   this project's ``<from stem>___<to stem>.png``, the 5-panel strips ``<from>.jpg___<to>.jpg_vis.jpg``
   of PATN / XingGAN / BiGraphGAN, ``<from>.jpg___<to>.jpg``, the ``<from>_2_<to>`` names of the
   later repositories) is recognised and printed in one line; the files are matched to the pairs
   of a pairs CSV (or the pairs are taken from the names) and to their targets, and all are
   checked up front (missing or unreadable files, sizes);
2. plan (:mod:`xinggan.metrics.plan`): which of the protocol's metrics (or of ``metrics``) can
   run, which cannot and why, and the networks they load;
3. a stream of batches of pairs, each read once with the protocol's steps
   (:mod:`xinggan.metrics.protocols`: JPEG round trip, white columns, pose masks) and handed to one
   accumulator per metric (:mod:`xinggan.metrics.accumulators`), which keeps only per-pair scores,
   Inception logits, running FID sums or keypoints.

Strips are scored as the released ``getMetrics_*.py`` scored them: without a targets folder the
target is the strip's own panel 2 and the generated image panel 4; panels are taken as decoded
from the file, with no further JPEG round trip (they already are the output of the released
pipeline's step 1).

PCKh needs keypoints of the generated images: a CSV of detections (``detected_keypoints``), or an
OpenPose body weights file (``pose_weights``), with which the keypoints are detected here the way
PATN's ``tool/crop_*.py`` + ``compute_coordinates.py`` did: the generated image is re-saved as
JPEG at quality 75 (the released scripts cropped it out of the strip and saved it as ``.jpg``)
and passed to :mod:`xinggan.keypoints.openpose`. For single images, that extra round trip is
applied when the protocol's JPEG round trip is on.

A default metric that cannot run here (no weights, no keypoints, no real set) is listed in
``skipped`` with the reason (the scripts then exit non-zero after writing the others, unless
missing metrics are allowed); a metric asked for explicitly that cannot run raises
:class:`MetricUnavailable`, which says what to provide. The reports are written by
:mod:`xinggan.metrics.report`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from ..precision import strict_float32
from ..progress import progress as progress_bar
from .accumulators import (RESULT_ORDER, Accumulator, FIDAccumulator, InceptionScoreAccumulator, L1Accumulator,
                           LPIPSAccumulator, MaskedInceptionScoreAccumulator, MaskedLPIPSAccumulator,
                           MaskedSSIMAccumulator, PCKhAccumulator, PSNRAccumulator, SSIMAccumulator)
from .inputs import BatchReader, EvaluationInputError, EvaluationInputs, resolve_inputs
from .plan import MetricPlan, MetricUnavailable, plan_metrics, select_metrics
from .protocols import get_protocol
from .report import METRIC_LABELS, format_table, report_missing_metrics, write_metrics
from .weights import MetricWeights

__all__ = ["MetricUnavailable", "EvaluationInputError", "evaluate_folder",
           # the reports, kept importable from here for the scripts that import them from this module
           "METRIC_LABELS", "format_table", "report_missing_metrics", "write_metrics"]


def _accumulators(plan: MetricPlan, inputs: EvaluationInputs, roundtrip: bool, device: torch.device,
                  batch_size: int, cache_dir, progress: bool, detections_csv) -> list[Accumulator]:
    """One accumulator per metric that runs, in the order of ``metrics.json``."""
    n, protocol = len(inputs.pairs), plan.protocol
    make = {
        "ssim": lambda: SSIMAccumulator(n, protocol),
        "mask_ssim": lambda: MaskedSSIMAccumulator(n, protocol),
        "lpips": lambda: LPIPSAccumulator(n, plan.lpips),
        "mask_lpips": lambda: MaskedLPIPSAccumulator(n, plan.lpips),
        "psnr": lambda: PSNRAccumulator(n),
        "l1": lambda: L1Accumulator(n),
        "is": lambda: InceptionScoreAccumulator(n, plan.tf_inception),
        "mask_is": lambda: MaskedInceptionScoreAccumulator(n, plan.tf_inception),
        "fid": lambda: FIDAccumulator(plan.fid_features, plan.real_paths, protocol, roundtrip, device,
                                      batch_size, cache_dir, progress),
        "pckh": lambda: PCKhAccumulator(plan.target_keypoints, plan.detections, plan.detector,
                                        resave_jpeg=roundtrip or inputs.panels > 1, pose_weights=plan.pose_weights,
                                        detections_csv=detections_csv,
                                        generated_names=[ref.name for ref in inputs.generated]),
    }
    return [make[metric]() for metric in RESULT_ORDER if plan.runs(metric)]


def evaluate_folder(
    protocol: str,
    generated_dir: Union[str, Path],
    targets_dir: Union[str, Path, None] = None,
    pairs_csv: Union[str, Path, None] = None,
    annotations_csv: Union[str, Path, None] = None,
    metrics: Optional[Sequence[str]] = None,
    jpeg_roundtrip: Optional[bool] = None,
    detected_keypoints: Union[str, Path, None] = None,
    real_dir: Union[str, Path, None] = None,
    weights: Union[MetricWeights, dict, None] = None,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    cache_dir: Union[str, Path, None] = None,
    layout: Optional[str] = None,
    panel: Optional[int] = None,
    file_order: str = "sorted",
    pose_weights: Union[str, Path, None] = None,
    detections_csv: Union[str, Path, None] = None,
    log: Optional[Callable[[str], None]] = print,
) -> dict:
    """Compute the protocol's metrics (or ``metrics``) for a folder of generated images.

    Returns ``{'protocol', 'num_pairs', 'jpeg_roundtrip', 'layout', <metric>: value ..., 'skipped':
    {metric: reason}, 'details': {...}}``. ``jpeg_roundtrip=None`` follows the protocol; when on,
    targets get the released pipeline's 8-bit conversion and a JPEG q75 round trip, generated PNGs
    the JPEG round trip, generated JPEGs are used as they are (they already are step 1's output).
    ``annotations_csv`` (target keypoints) enables the mask metrics and PCKh; ``detected_keypoints``
    (keypoints detected on the generated images, annotation format, rows named after the generated
    files) enables PCKh; ``real_dir`` (real images) enables FID. ``weights``: :class:`MetricWeights`
    (see :meth:`MetricWeights.for_protocol`) or a dict of its fields.

    ``layout`` / ``panel`` / ``file_order``: see :mod:`xinggan.metrics.layouts` (``layout=None``
    infers it from the names). ``targets_dir=None`` is allowed for strips (the target is their
    panel 2); ``pairs_csv=None`` takes the pairs from the file names. ``pose_weights``: an OpenPose
    body weights file (``pose_estimator.h5`` or ``body_pose_model.pth``) to detect the generated
    images' keypoints for PCKh, in place of ``weights.pose``; ``detections_csv`` writes those
    detections (annotation format). ``log`` receives the one-line summary of the matched layout
    (``None``: silent).
    """
    spec = get_protocol(protocol)
    requested, explicit = select_metrics(spec, metrics)
    roundtrip = spec.jpeg_roundtrip if jpeg_roundtrip is None else bool(jpeg_roundtrip)
    weights = MetricWeights.coerce(weights)
    if pose_weights is not None:
        weights = replace(weights, pose=str(pose_weights))
    device = torch.device(device)

    inputs = resolve_inputs(spec, generated_dir, targets_dir, pairs_csv, layout, panel, file_order, log)
    plan = plan_metrics(spec, inputs, requested, explicit, weights, annotations_csv=annotations_csv,
                        detected_keypoints=detected_keypoints, real_dir=real_dir, device=device)
    # the metric networks run in strict float32 on CUDA (no TF32), whatever the caller set
    with strict_float32(), torch.no_grad():
        accumulators = _accumulators(plan, inputs, roundtrip, device, batch_size, cache_dir, progress,
                                     detections_csv)
        streaming = [acc for acc in accumulators if acc.streams]
        reader = BatchReader(inputs, spec, roundtrip, device,
                             plan.target_keypoints if plan.needs_masks else None)
        starts = range(0, len(inputs.pairs), batch_size) if streaming else range(0)
        for start in progress_bar(starts, desc=f"evaluate [{spec.name}]", unit="batch",
                                  disable=not progress):
            batch = reader.read(start, min(start + batch_size, len(inputs.pairs)))
            for acc in streaming:
                acc.update(batch)

        results = {"protocol": spec.name, "num_pairs": len(inputs.pairs), "jpeg_roundtrip": roundtrip,
                   "layout": inputs.layout}
        details = inputs.details()
        for acc in accumulators:
            results.update(acc.result())
            details.update(acc.details())
    if plan.runs("ssim") or plan.runs("mask_ssim"):
        details["ssim_settings"] = spec.ssim.name
    results["skipped"] = plan.skipped
    results["details"] = details
    return results
