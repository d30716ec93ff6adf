"""One accumulator per metric: ``update(batch)`` for each batch of pairs, ``result()`` at the end.

Each keeps only what its value needs (scores per pair, logits, running FID sums, keypoints), so any
number of pairs streams in bounded memory. Formulas: docs/data_and_metrics.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..data import write_annotations
from ..metric_registry import Metric, Protocol
from .fid import RunningStatistics, frechet_distance, real_statistics
from .inception_score import inception_score_from_logits
from .inputs import Batch, EvaluationInputError, image_size, load_rgb, to_tensor
from .l1 import l1_distance
from .pckh import pckh
from .preprocess import jpeg_roundtrip, released_8bit
from .psnr import psnr
from .ssim import ssim

__all__ = ["Accumulator", "MeanOverPairs", "SSIMAccumulator", "LPIPSAccumulator", "PSNRAccumulator",
           "L1Accumulator", "InceptionScoreAccumulator", "FIDAccumulator", "PCKhAccumulator", "build_accumulator"]

INCEPTION_LOGITS = 1008  # classes of TensorFlow's 2015 Inception graph (1000 ImageNet classes + 8 unused)


class Accumulator:
    """One metric over the pairs; ``streams``: ``update`` sees every batch. ``result()`` gives its
    entries of ``metrics.json``, ``details()`` those of ``details``."""

    streams = True

    def __init__(self, metric: Metric):
        self.name, self.masked = metric.name, metric.masked

    def details(self) -> dict:
        return {}


class MeanOverPairs(Accumulator):
    """A score per pair (``score(batch)`` -> ``(B,)``), reported as the mean over pairs."""

    def __init__(self, metric: Metric, num_pairs: int):
        super().__init__(metric)
        self.scores = np.empty(num_pairs)  # preallocated: many small arrays fragment the heap

    def update(self, batch: Batch) -> None:
        self.scores[batch.start:batch.stop] = self.score(batch)

    def result(self) -> dict:
        return {self.name: float(self.scores.mean())}


class SSIMAccumulator(MeanOverPairs):
    """SSIM of the protocol's settings in its padded frame; masked: both images times the pose mask."""

    def __init__(self, metric: Metric, num_pairs: int, protocol: Protocol):
        super().__init__(metric, num_pairs)
        self.settings = protocol.ssim
        self.unit_range = protocol.ssim_input != "uint8"

    def score(self, batch: Batch) -> np.ndarray:
        generated, target = batch.generated_padded, batch.target_padded
        if self.masked:
            generated, target = generated * batch.masks_padded, target * batch.masks_padded
        if self.unit_range:
            generated, target = generated.to(torch.float32) / 255.0, target.to(torch.float32) / 255.0
        return ssim(generated, target, self.settings).cpu().numpy()


class LPIPSAccumulator(MeanOverPairs):
    """LPIPS (AlexNet, v0.1) on images in [-1, 1]; masked: both times the pose mask."""

    def __init__(self, metric: Metric, num_pairs: int, network: torch.nn.Module):
        super().__init__(metric, num_pairs)
        self.network = network

    def score(self, batch: Batch) -> np.ndarray:
        generated, target = batch.signed
        if self.masked:
            generated, target = generated * batch.masks, target * batch.masks
        return self.network(generated, target).numpy()


class PSNRAccumulator(MeanOverPairs):
    """PSNR with data range 1 on ``x / 255``."""

    def score(self, batch: Batch) -> np.ndarray:
        return psnr(batch.generated.to(torch.float32) / 255.0, batch.target.to(torch.float32) / 255.0).cpu().numpy()


class L1Accumulator(MeanOverPairs):
    """Mean absolute error in [-1, 1]."""

    def score(self, batch: Batch) -> np.ndarray:
        return l1_distance(*batch.signed).cpu().numpy()


class InceptionScoreAccumulator(Accumulator):
    """IS of the generated images (padded frame) from the TF-ported Inception's logits; masked:
    the generated images times the target's pose mask."""

    def __init__(self, metric: Metric, num_pairs: int, network: torch.nn.Module):
        super().__init__(metric)
        self.network = network
        self.logits = np.empty((num_pairs, INCEPTION_LOGITS), dtype=np.float32)

    def update(self, batch: Batch) -> None:
        images = batch.generated_padded * batch.masks_padded if self.masked else batch.generated_padded
        self.logits[batch.start:batch.stop] = self.network(images)["logits_unbiased"].numpy()

    def result(self) -> dict:
        mean, std = inception_score_from_logits(self.logits)
        return {self.name: mean, f"{self.name}_std": std}


class FIDAccumulator(Accumulator):
    """FID of the generated images against the plan's real images (given step 1 of the targets when
    the round trip is on); the real statistics are cached (:func:`~xinggan.metrics.fid.real_statistics`)."""

    def __init__(self, metric: Metric, plan):
        super().__init__(metric)
        self.plan = plan
        self.generated = RunningStatistics()

    def update(self, batch: Batch) -> None:
        self.generated.add(self.plan.fid_features(batch.generated))

    def _real_features(self, paths: Sequence[Path], size: tuple[int, int]) -> torch.Tensor:
        images = load_rgb(paths)
        if images.shape[1:3] != size:
            first = self.plan.real_paths[0]
            raise EvaluationInputError(f"{first.parent}: real images have different sizes "
                                       f"(first {first.name} is {size[0]}x{size[1]})")
        if self.plan.roundtrip:
            images = jpeg_roundtrip(released_8bit(images))
        return self.plan.fid_features(to_tensor(images, self.plan.device))

    def result(self) -> dict:
        plan = self.plan
        size = image_size(plan.real_paths[0])
        mu_real, sigma_real = real_statistics(plan.real_paths, plan.protocol.name, plan.protocol.fid_network, size,
                                              lambda paths: self._real_features(paths, size), plan.batch_size,
                                              plan.cache_dir, plan.progress)
        return {self.name: frechet_distance(*self.generated.statistics(), mu_real, sigma_real)}

    def details(self) -> dict:
        return {"fid_real_images": len(self.plan.real_paths), "fid_network": self.plan.protocol.fid_network}


class PCKhAccumulator(Accumulator):
    """PCKh of the generated images' keypoints against the targets': ``detections`` (one per pair) or a
    ``detector`` run on each generated image, re-saved as JPEG q75 when ``resave_jpeg`` (as the released
    crop script did); its detections go to ``detections_csv`` (rows ``generated_names``) when given."""

    def __init__(self, metric: Metric, target_keypoints: np.ndarray, detections: Optional[list] = None, detector=None,
                 resave_jpeg: bool = False, pose_weights: Optional[str] = None,
                 detections_csv: Optional[Path] = None, generated_names: Sequence[str] = ()):
        if (detections is None) == (detector is None):
            raise ValueError("PCKh needs either detections or a detector")
        super().__init__(metric)
        self.target_keypoints = target_keypoints
        self.detector, self.resave_jpeg = detector, resave_jpeg
        self.detections = list(detections) if detections is not None else []
        self.streams = detector is not None
        self.pose_weights, self.detections_csv = pose_weights, detections_csv
        self.generated_names = list(generated_names)
        self._scored: Optional[dict] = None

    def update(self, batch: Batch) -> None:
        seen = jpeg_roundtrip(batch.generated_rgb) if self.resave_jpeg else batch.generated_rgb
        self.detections.extend(self.detector.detect(image) for image in seen)

    def result(self) -> dict:
        if self.detector is not None and self.detections_csv is not None:
            write_annotations(self.detections_csv, dict(zip(self.generated_names, self.detections)))
        self._scored = pckh(self.detections, self.target_keypoints)
        return {self.name: self._scored["score"]}

    def details(self) -> dict:
        details = {}
        if self.detector is not None:
            details["pckh_detector"] = f"openpose ({Path(self.pose_weights).name})"
            if self.detections_csv is not None:
                details["pckh_detections"] = str(self.detections_csv)
        if self._scored is not None:
            details[self.name] = {k: v for k, v in self._scored.items() if k != "score"}
        return details


def build_accumulator(metric: Metric, plan) -> Accumulator:
    """The accumulator the registry names for ``metric``, set up from a
    :class:`~xinggan.metrics.evaluate.MetricPlan`."""
    name, n = metric.accumulator, plan.num_pairs
    if name == "FIDAccumulator":
        return FIDAccumulator(metric, plan)
    if name == "PCKhAccumulator":
        return PCKhAccumulator(metric, plan.target_keypoints, plan.detections, plan.detector,
                               resave_jpeg=plan.roundtrip or plan.inputs.panels > 1, pose_weights=plan.pose_weights,
                               detections_csv=plan.detections_csv,
                               generated_names=[ref.name for ref in plan.inputs.generated])
    extra = {"SSIMAccumulator": (plan.protocol,), "LPIPSAccumulator": (plan.lpips,),
             "InceptionScoreAccumulator": (plan.tf_inception,)}.get(name, ())
    return globals()[name](metric, n, *extra)
