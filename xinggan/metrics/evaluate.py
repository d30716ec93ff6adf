"""Score a folder of generated images against the targets under one evaluation protocol.

:func:`evaluate_folder` checks the inputs, plans the metrics (:func:`plan_metrics`: which run, which
cannot and why, the networks they load), then streams batches of pairs through one accumulator per
metric. A default metric that cannot run is listed in ``skipped``; an explicit one raises
:class:`MetricUnavailable`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..hints import closest
from ..keypoints import DetectorUnavailable, build_detector
from ..metric_registry import METRICS, Protocol, get_protocol
from ..precision import strict_float32
from ..progress import progress as progress_bar
from .accumulators import SSIMAccumulator, build_accumulator
from .fid import TorchvisionInception
from .inception_score import IS_SPLITS, TFInception
from .inputs import (BatchReader, EvaluationInputError, EvaluationInputs, detections_by_pair, image_files,
                     resolve_inputs, target_keypoints)
from .lpips import LPIPSAlex
from .weights import MetricWeights, WeightsUnavailable

__all__ = ["MetricUnavailable", "MetricPlan", "select_metrics", "plan_metrics", "evaluate_folder"]

PathLike = Union[str, Path]


class MetricUnavailable(RuntimeError):
    """A metric asked for explicitly cannot be computed; the message says what to provide."""


def select_metrics(protocol: Protocol, metrics: Optional[Sequence[str]]) -> tuple[list, bool]:
    """``(metric names, explicit)``: ``metrics`` normalised (``mask-ssim`` -> ``mask_ssim``), or the
    protocol's defaults with ``explicit=False``."""
    if metrics is None:
        return list(protocol.default_metrics), False
    names = [m.strip().lower().replace("-", "_") for m in metrics if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        hints = [closest(m, METRICS) for m in unknown]
        nearest = "; ".join(f"did you mean {h!r} for {m!r}?" for m, h in zip(unknown, hints) if h)
        raise ValueError(f"unknown metric(s) {unknown}{'; ' + nearest if nearest else ''}; "
                         f"available: {list(METRICS)}")
    return list(dict.fromkeys(names)), True


@dataclass
class MetricPlan:
    """What an evaluation computes, with what, and how; ``skipped``: metric -> reason it cannot run.
    ``detections`` (a CSV) or ``detector`` give the generated keypoints; unneeded networks are None."""

    protocol: Protocol
    inputs: EvaluationInputs
    requested: list
    explicit: bool
    roundtrip: bool = False
    device: torch.device = torch.device("cpu")
    batch_size: int = 64
    cache_dir: Optional[Path] = None
    progress: bool = True
    detections_csv: Optional[Path] = None
    skipped: dict = field(default_factory=dict)
    target_keypoints: Optional[np.ndarray] = None
    detections: Optional[list] = None
    detector: object = None
    pose_weights: Optional[str] = None
    real_paths: list = field(default_factory=list)
    tf_inception: Optional[TFInception] = None
    torchvision_inception: Optional[TorchvisionInception] = None
    lpips: Optional[LPIPSAlex] = None

    @property
    def num_pairs(self) -> int:
        return len(self.inputs.pairs)

    @property
    def active(self) -> list:
        """The requested metrics that run, in the order asked for."""
        return [m for m in self.requested if m not in self.skipped]

    @property
    def needs_masks(self) -> bool:
        return any(METRICS[m].masked for m in self.active)

    def running(self, need: str = "", network: str = "") -> list:
        """The metrics that still run and have ``need`` among their needs, or use ``network``."""
        return [m for m in self.active if (need in METRICS[m].needs if need else METRICS[m].network == network)]

    def unavailable(self, metric: str, reason: str) -> None:
        """Record that ``metric`` cannot run; an error when it was asked for explicitly."""
        if self.explicit:
            raise MetricUnavailable(f"metric {metric!r} (protocol {self.protocol.name}) cannot run: {reason}")
        self.skipped[metric] = reason

    def fid_features(self, images_u8: torch.Tensor) -> torch.Tensor:
        """``(B, 2048)`` pool features of the protocol's FID network for uint8 ``(B, 3, H, W)`` images."""
        if self.torchvision_inception is not None:
            return self.torchvision_inception(images_u8)
        return self.tf_inception(images_u8)["2048"]


def _plan_keypoints(plan: MetricPlan, annotations_csv, detected_keypoints) -> None:
    keyed = plan.running("target_keypoints")
    if keyed and annotations_csv is None:
        for metric in keyed:
            plan.unavailable(metric, "needs the target keypoints: pass annotations_csv (--annotations) in the "
                                     "annotation format (name: [y...]: [x...])")
    elif keyed:
        plan.target_keypoints = target_keypoints(annotations_csv, plan.inputs.pairs)
    for metric in plan.running("generated_keypoints"):
        if detected_keypoints is not None:
            plan.detections = detections_by_pair(detected_keypoints, plan.inputs.pairs, plan.inputs.generated)
        elif plan.pose_weights is not None:
            try:
                plan.detector = build_detector("openpose", weights=str(plan.pose_weights), device=plan.device)
            except DetectorUnavailable as error:
                plan.unavailable(metric, str(error))
        else:
            plan.unavailable(metric, "needs keypoints of the generated images: pass the OpenPose body weights "
                                     "(pose_weights / --pose-weights / eval.pose_weights: PATN's Keras "
                                     "pose_estimator.h5 or the PyTorch conversion body_pose_model.pth), or a "
                                     "CSV of detections (--detected-keypoints / eval.detected_keypoints)")


def _plan_sets(plan: MetricPlan, real_dir) -> None:
    for metric in plan.running("real_images"):
        if real_dir is None:
            plan.unavailable(metric, "needs a folder of real images for the reference statistics: pass "
                                     "real_dir (--real)")
            continue
        plan.real_paths = image_files(Path(real_dir)) if Path(real_dir).is_dir() else []
        if len(plan.real_paths) < 2:
            raise EvaluationInputError(f"real images folder {real_dir} does not exist or has fewer than 2 images")
    for metric in plan.running("inception_splits"):
        if plan.num_pairs < IS_SPLITS:
            plan.unavailable(metric, f"needs at least {IS_SPLITS} images for its {IS_SPLITS} splits, "
                                     f"got {plan.num_pairs}")


def _load(plan: MetricPlan, metrics: list, build: Callable[[], torch.nn.Module]) -> Optional[torch.nn.Module]:
    """``build()`` on the plan's device when ``metrics`` run; missing weights make them unavailable."""
    if not metrics:
        return None
    try:
        return build().to(plan.device)
    except WeightsUnavailable as error:
        for metric in metrics:
            plan.unavailable(metric, str(error))
        return None


def _load_networks(plan: MetricPlan, weights: MetricWeights) -> None:
    # One TF-ported Inception gives the IS logits and, for 'tf-inception' protocols, FID's features.
    tf_fid = plan.running(network="fid-network") if plan.protocol.fid_network == "tf-inception" else []
    tf_metrics = plan.running(network="tf-inception") + tf_fid
    features = (("logits_unbiased",) if plan.running(network="tf-inception") else ()) + (("2048",) if tf_fid else ())
    plan.tf_inception = _load(plan, tf_metrics, lambda: TFInception(features, weights.inception,
                                                                    weights.allow_download))
    tv_fid = plan.running(network="fid-network") if plan.protocol.fid_network == "torchvision" else []
    plan.torchvision_inception = _load(plan, tv_fid, lambda: TorchvisionInception(weights.torchvision_inception,
                                                                                  weights.allow_download))
    plan.lpips = _load(plan, plan.running(network="alexnet"),
                       lambda: LPIPSAlex(weights.alexnet, allow_download=weights.allow_download))


def plan_metrics(protocol: Protocol, inputs: EvaluationInputs, requested: Sequence[str], explicit: bool,
                 weights: Union[MetricWeights, dict, None] = None, annotations_csv=None, detected_keypoints=None,
                 real_dir=None, **settings) -> MetricPlan:
    """The :class:`MetricPlan` of ``requested`` (from :func:`select_metrics`) on ``inputs``; ``settings``
    are its other fields. PCKh detects with ``weights.pose`` unless ``detected_keypoints`` is given."""
    weights = MetricWeights.coerce(weights)
    plan = MetricPlan(protocol, inputs, list(requested), explicit, pose_weights=weights.pose, **settings)
    plan.device = torch.device(plan.device)
    _plan_keypoints(plan, annotations_csv, detected_keypoints)
    _plan_sets(plan, real_dir)
    _load_networks(plan, weights)
    return plan


def evaluate_folder(protocol: str, generated_dir: PathLike, targets_dir: Optional[PathLike] = None,
                    pairs_csv: Optional[PathLike] = None, annotations_csv: Optional[PathLike] = None,
                    metrics: Optional[Sequence[str]] = None, jpeg_roundtrip: Optional[bool] = None,
                    detected_keypoints: Optional[PathLike] = None, real_dir: Optional[PathLike] = None,
                    weights: Union[MetricWeights, dict, None] = None, device: Union[str, torch.device] = "cpu",
                    batch_size: int = 64, progress: bool = True, cache_dir: Optional[PathLike] = None,
                    layout: Optional[str] = None, panel: Optional[int] = None, file_order: str = "sorted",
                    pose_weights: Optional[PathLike] = None, detections_csv: Optional[PathLike] = None,
                    log: Optional[Callable[[str], None]] = print) -> dict:
    """The protocol's metrics (or ``metrics``) of a folder: ``{'protocol', 'num_pairs', 'jpeg_roundtrip',
    'layout', <metric>: value, 'skipped': {metric: reason}, 'details'}``. Inputs: docs/data_and_metrics.md."""
    spec = get_protocol(protocol)
    requested, explicit = select_metrics(spec, metrics)
    roundtrip = spec.jpeg_roundtrip if jpeg_roundtrip is None else bool(jpeg_roundtrip)
    weights = MetricWeights.coerce(weights)
    if pose_weights is not None:
        weights = replace(weights, pose=str(pose_weights))

    inputs = resolve_inputs(spec, generated_dir, targets_dir, pairs_csv, layout, panel, file_order, log)
    plan = plan_metrics(spec, inputs, requested, explicit, weights, annotations_csv=annotations_csv,
                        detected_keypoints=detected_keypoints, real_dir=real_dir, roundtrip=roundtrip,
                        device=device, batch_size=batch_size, cache_dir=cache_dir, progress=progress,
                        detections_csv=detections_csv)
    # strict float32 on CUDA (no TF32), whatever the caller set
    with strict_float32(), torch.no_grad():
        accumulators = [build_accumulator(metric, plan) for name, metric in METRICS.items() if name in plan.active]
        streaming = [acc for acc in accumulators if acc.streams]
        reader = BatchReader(inputs, spec, roundtrip, plan.device,
                             plan.target_keypoints if plan.needs_masks else None)
        starts = range(0, plan.num_pairs, batch_size) if streaming else range(0)
        for start in progress_bar(starts, desc=f"evaluate [{spec.name}]", unit="batch", disable=not progress):
            batch = reader.read(start, min(start + batch_size, plan.num_pairs))
            for acc in streaming:
                acc.update(batch)

        results = {"protocol": spec.name, "num_pairs": plan.num_pairs, "jpeg_roundtrip": roundtrip,
                   "layout": inputs.layout}
        details = inputs.details()
        for acc in accumulators:
            results.update(acc.result())
            details.update(acc.details())
    if any(isinstance(acc, SSIMAccumulator) for acc in accumulators):
        details["ssim_settings"] = spec.ssim
    results["skipped"] = plan.skipped
    results["details"] = details
    return results
