"""The metric plan of an evaluation: which metrics run, which cannot and why, and the networks they load.

:func:`select_metrics` reads the metric names (the protocol's defaults when none are given).
:func:`plan_metrics` then checks, in this order, what each metric needs and loads the networks of
the ones that can run:

* mask-SSIM, mask-IS, mask-LPIPS and PCKh: the targets' keypoints (an annotation CSV);
* PCKh: keypoints of the generated images, either a CSV of detections or the OpenPose body
  weights with which they are detected during the evaluation;
* FID: a folder of at least 2 real images (the reference statistics);
* IS and mask-IS: at least 10 images, one per split;
* the networks: the TF-ported Inception (features ``logits_unbiased`` for IS, ``2048`` for the
  FID of protocols whose ``fid_network`` is ``'tf-inception'``; one network computes both),
  torchvision's Inception-v3 (FID of ``'torchvision'`` protocols), AlexNet (LPIPS, mask-LPIPS),
  each from the file :class:`~xinggan.metrics.weights.MetricWeights` names.

A metric the protocol runs by default that cannot run here is recorded in ``skipped`` with the
reason; a metric asked for explicitly that cannot run raises :class:`MetricUnavailable`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..hints import closest
from .fid import TorchvisionInception
from .inception_score import IS_SPLITS, TFInception
from .inputs import EvaluationInputError, EvaluationInputs, detections_by_pair, image_files, target_keypoints
from .lpips import LPIPSAlex
from .protocols import ALL_METRICS, Protocol
from .weights import MetricWeights, WeightsUnavailable

__all__ = ["MASK_METRICS", "MetricUnavailable", "MetricPlan", "select_metrics", "plan_metrics"]

MASK_METRICS = ("mask_ssim", "mask_is", "mask_lpips")
_INCEPTION_SCORES = ("is", "mask_is")
_LPIPS_METRICS = ("lpips", "mask_lpips")


class MetricUnavailable(RuntimeError):
    """A metric asked for explicitly cannot be computed; the message says what to provide."""


def select_metrics(protocol: Protocol, metrics: Optional[Sequence[str]]) -> tuple[list, bool]:
    """``(metric names, explicit)``: ``metrics`` normalised (``mask-ssim`` -> ``mask_ssim``), or
    the protocol's defaults with ``explicit=False``; an unknown name names the nearest one."""
    if metrics is None:
        return list(protocol.default_metrics), False
    names = [m.strip().lower().replace("-", "_") for m in metrics if m.strip()]
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown:
        hints = [closest(m, ALL_METRICS) for m in unknown]
        nearest = "; ".join(f"did you mean {h!r} for {m!r}?" for m, h in zip(unknown, hints) if h)
        raise ValueError(f"unknown metric(s) {unknown}{'; ' + nearest if nearest else ''}; "
                         f"available: {list(ALL_METRICS)}")
    return list(dict.fromkeys(names)), True


@dataclass
class MetricPlan:
    """What an evaluation computes, and with what.

    ``requested``: the metric names; ``skipped``: metric -> reason it cannot run;
    ``target_keypoints``: ``(N, 18, 2)`` per pair (mask metrics, PCKh) or None; ``detections``:
    keypoints read from a CSV of detections, or None; ``detector`` / ``pose_weights``: the OpenPose
    detector that finds them during the evaluation instead; ``real_paths``: the FID reference
    images; ``tf_inception`` / ``torchvision_inception`` / ``lpips``: the loaded networks (None:
    not needed).
    """

    protocol: Protocol
    requested: list
    explicit: bool
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
    def active(self) -> list:
        """The requested metrics that run, in the order asked for."""
        return [m for m in self.requested if m not in self.skipped]

    @property
    def needs_masks(self) -> bool:
        return any(m in self.active for m in MASK_METRICS)

    def runs(self, metric: str) -> bool:
        return metric in self.requested and metric not in self.skipped

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


def _plan_keypoints(plan: MetricPlan, inputs: EvaluationInputs, annotations_csv, detected_keypoints,
                    device: torch.device) -> None:
    keyed = [m for m in plan.requested if m in MASK_METRICS + ("pckh",)]
    if keyed and annotations_csv is None:
        for metric in keyed:
            plan.unavailable(metric, "needs the target keypoints: pass annotations_csv (--annotations) in the "
                                     "annotation format (name: [y...]: [x...])")
    elif keyed:
        plan.target_keypoints = target_keypoints(annotations_csv, inputs.pairs)
    if not plan.runs("pckh"):
        return
    if detected_keypoints is not None:
        plan.detections = detections_by_pair(detected_keypoints, inputs.pairs, inputs.generated)
    elif plan.pose_weights is not None:
        from ..keypoints import DetectorUnavailable, build_detector

        try:
            plan.detector = build_detector("openpose", weights=str(plan.pose_weights), device=device)
        except DetectorUnavailable as error:
            plan.unavailable("pckh", str(error))
    else:
        plan.unavailable("pckh", "needs keypoints of the generated images: pass the OpenPose body weights "
                                 "(pose_weights / --pose-weights / eval.pose_weights: PATN's Keras "
                                 "pose_estimator.h5 or the PyTorch conversion body_pose_model.pth), or a CSV "
                                 "of detections (--detected-keypoints / eval.detected_keypoints)")


def _plan_sets(plan: MetricPlan, inputs: EvaluationInputs, real_dir) -> None:
    if "fid" in plan.requested and real_dir is None:
        plan.unavailable("fid", "needs a folder of real images for the reference statistics: pass real_dir (--real)")
    elif "fid" in plan.requested:
        plan.real_paths = image_files(Path(real_dir)) if Path(real_dir).is_dir() else []
        if len(plan.real_paths) < 2:
            raise EvaluationInputError(f"real images folder {real_dir} does not exist or has fewer than 2 images")
    for metric in _INCEPTION_SCORES:
        if plan.runs(metric) and len(inputs.pairs) < IS_SPLITS:
            plan.unavailable(metric, f"needs at least {IS_SPLITS} images for its {IS_SPLITS} splits, "
                                     f"got {len(inputs.pairs)}")


def _load_networks(plan: MetricPlan, weights: MetricWeights, device: torch.device) -> None:
    fid_network = plan.protocol.fid_network
    tf_features = []
    if any(plan.runs(m) for m in _INCEPTION_SCORES):
        tf_features.append("logits_unbiased")
    if plan.runs("fid") and fid_network == "tf-inception":
        tf_features.append("2048")
    if tf_features:
        try:
            plan.tf_inception = TFInception(tuple(tf_features), weights.inception, weights.allow_download).to(device)
        except WeightsUnavailable as error:
            for metric in _INCEPTION_SCORES + ("fid",):
                if plan.runs(metric) and (metric != "fid" or "2048" in tf_features):
                    plan.unavailable(metric, str(error))
    if plan.runs("fid") and fid_network == "torchvision":
        try:
            plan.torchvision_inception = TorchvisionInception(weights.torchvision_inception,
                                                              weights.allow_download).to(device)
        except WeightsUnavailable as error:
            plan.unavailable("fid", str(error))
    if any(plan.runs(m) for m in _LPIPS_METRICS):
        try:
            plan.lpips = LPIPSAlex(weights.alexnet, allow_download=weights.allow_download).to(device)
        except WeightsUnavailable as error:
            for metric in _LPIPS_METRICS:
                if plan.runs(metric):
                    plan.unavailable(metric, str(error))


def plan_metrics(protocol: Protocol, inputs: EvaluationInputs, requested: Sequence[str], explicit: bool,
                 weights: Union[MetricWeights, dict, None] = None, annotations_csv=None, detected_keypoints=None,
                 real_dir=None, device: Union[str, torch.device] = "cpu") -> MetricPlan:
    """The :class:`MetricPlan` of the metrics ``requested`` on ``inputs``.

    ``requested``, ``explicit``: what :func:`select_metrics` returns. ``weights.pose`` (OpenPose
    body weights) detects the generated images' keypoints for PCKh unless ``detected_keypoints``
    (a CSV of detections) is given.
    """
    weights = MetricWeights.coerce(weights)
    plan = MetricPlan(protocol, list(requested), explicit, pose_weights=weights.pose)
    device = torch.device(device)
    _plan_keypoints(plan, inputs, annotations_csv, detected_keypoints, device)
    _plan_sets(plan, inputs, real_dir)
    _load_networks(plan, weights, device)
    return plan
