"""One accumulator per metric: ``update(batch)`` for each batch of pairs, ``result()`` at the end.

Each keeps only what its value needs (per-pair scores, Inception logits, running FID sums or
keypoints), so an evaluation streams any number of pairs in bounded memory. The registry
(:mod:`xinggan.metric_registry`) names the class of each metric and whether it is masked; the
formulas are in docs/data_and_metrics.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

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
    """One metric over the pairs of an evaluation.

    ``streams``: whether it reads the images (``update`` is called for every batch); ``result()``
    returns its entries of ``metrics.json``, ``details()`` its entries of ``details``.
    """

    streams = True

    def __init__(self, metric: Metric):
        self.name, self.masked = metric.name, metric.masked

    @classmethod
    def from_plan(cls, metric: Metric, plan) -> "Accumulator":
        """The accumulator of ``metric`` set up from a :class:`~xinggan.metrics.evaluate.MetricPlan`."""
        raise NotImplementedError

    def update(self, batch: Batch) -> None:
        raise NotImplementedError

    def result(self) -> dict:
        raise NotImplementedError

    def details(self) -> dict:
        return {}


class MeanOverPairs(Accumulator):
    """A score per pair (``score(batch)`` -> ``(B,)``), reported as the mean over pairs."""

    def __init__(self, metric: Metric, num_pairs: int):
        super().__init__(metric)
        # Preallocated: keeping many small arrays alive between the large per-batch buffers
        # fragments the heap and grows memory with the number of pairs.
        self.scores = np.empty(num_pairs)

    @classmethod
    def from_plan(cls, metric: Metric, plan) -> "MeanOverPairs":
        return cls(metric, plan.num_pairs)

    def score(self, batch: Batch) -> np.ndarray:
        raise NotImplementedError

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

    @classmethod
    def from_plan(cls, metric: Metric, plan) -> "SSIMAccumulator":
        return cls(metric, plan.num_pairs, plan.protocol)

    def images(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.masked:
            return batch.generated_padded * batch.masks_padded, batch.target_padded * batch.masks_padded
        return batch.generated_padded, batch.target_padded

    def score(self, batch: Batch) -> np.ndarray:
        generated, target = self.images(batch)
        if self.unit_range:
            generated, target = generated.to(torch.float32) / 255.0, target.to(torch.float32) / 255.0
        return ssim(generated, target, self.settings).cpu().numpy()


class LPIPSAccumulator(MeanOverPairs):
    """LPIPS (AlexNet, v0.1) on images in [-1, 1]; masked: both times the pose mask."""

    def __init__(self, metric: Metric, num_pairs: int, network: torch.nn.Module):
        super().__init__(metric, num_pairs)
        self.network = network

    @classmethod
    def from_plan(cls, metric: Metric, plan) -> "LPIPSAccumulator":
        return cls(metric, plan.num_pairs, plan.lpips)

    def images(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.masked:
            generated, target = batch.signed
            return generated * batch.masks, target * batch.masks
        return batch.signed

    def score(self, batch: Batch) -> np.ndarray:
        return self.network(*self.images(batch)).numpy()


class PSNRAccumulator(MeanOverPairs):
    """PSNR with data range 1 on ``x / 255``."""

    def score(self, batch: Batch) -> np.ndarray:
        unit = (batch.generated.to(torch.float32) / 255.0, batch.target.to(torch.float32) / 255.0)
        return psnr(*unit).cpu().numpy()


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

    @classmethod
    def from_plan(cls, metric: Metric, plan) -> "InceptionScoreAccumulator":
        return cls(metric, plan.num_pairs, plan.tf_inception)

    def images(self, batch: Batch) -> torch.Tensor:
        return batch.generated_padded * batch.masks_padded if self.masked else batch.generated_padded

    def update(self, batch: Batch) -> None:
        self.logits[batch.start:batch.stop] = self.network(self.images(batch))["logits_unbiased"].numpy()

    def result(self) -> dict:
        mean, std = inception_score_from_logits(self.logits)
        return {self.name: mean, f"{self.name}_std": std}


class FIDAccumulator(Accumulator):
    """FID of the generated images against a folder of real images.

    ``features``: uint8 ``(B, 3, H, W)`` -> ``(B, 2048)`` of the protocol's FID network. The real
    images get the same step 1 as the targets when the round trip is on; their statistics are
    cached per protocol, network, file list and resolution (:func:`~xinggan.metrics.fid.real_statistics`).
    """

    def __init__(self, metric: Metric, features: Callable[[torch.Tensor], torch.Tensor], real_paths: Sequence[Path],
                 protocol: Protocol, roundtrip: bool, device: torch.device, batch_size: int = 64,
                 cache_dir: Optional[Path] = None, progress: bool = True):
        super().__init__(metric)
        self.features, self.real_paths, self.protocol = features, list(real_paths), protocol
        self.roundtrip, self.device, self.batch_size = roundtrip, device, batch_size
        self.cache_dir, self.progress = cache_dir, progress
        self.generated = RunningStatistics()

    @classmethod
    def from_plan(cls, metric: Metric, plan) -> "FIDAccumulator":
        return cls(metric, plan.fid_features, plan.real_paths, plan.protocol, plan.roundtrip, plan.device,
                   plan.batch_size, plan.cache_dir, plan.progress)

    def update(self, batch: Batch) -> None:
        self.generated.add(self.features(batch.generated))

    def _real_features(self, paths: Sequence[Path], size: tuple[int, int]) -> torch.Tensor:
        images = load_rgb(paths)
        if images.shape[1:3] != size:
            raise EvaluationInputError(f"{self.real_paths[0].parent}: real images have different sizes "
                                       f"(first {self.real_paths[0].name} is {size[0]}x{size[1]})")
        if self.roundtrip:
            images = jpeg_roundtrip(released_8bit(images))
        return self.features(to_tensor(images, self.device))

    def result(self) -> dict:
        size = image_size(self.real_paths[0])
        mu_real, sigma_real = real_statistics(self.real_paths, self.protocol.name, self.protocol.fid_network, size,
                                              lambda paths: self._real_features(paths, size), self.batch_size,
                                              self.cache_dir, self.progress)
        mu_generated, sigma_generated = self.generated.statistics()
        return {self.name: frechet_distance(mu_generated, sigma_generated, mu_real, sigma_real)}

    def details(self) -> dict:
        return {"fid_real_images": len(self.real_paths), "fid_network": self.protocol.fid_network}


class PCKhAccumulator(Accumulator):
    """PCKh of keypoints detected on the generated images against the targets' keypoints.

    Either ``detections`` (read from a CSV, one per pair) or a ``detector`` that sees each
    generated image during the evaluation, re-saved as JPEG q75 when ``resave_jpeg`` (the released
    crop script saved every generated image as ``.jpg`` before detecting); its detections are
    written to ``detections_csv`` (annotation format, rows named ``generated_names``) when given.
    """

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

    @classmethod
    def from_plan(cls, metric: Metric, plan) -> "PCKhAccumulator":
        inputs = plan.inputs
        return cls(metric, plan.target_keypoints, plan.detections, plan.detector,
                   resave_jpeg=plan.roundtrip or inputs.panels > 1, pose_weights=plan.pose_weights,
                   detections_csv=plan.detections_csv, generated_names=[ref.name for ref in inputs.generated])

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
    """The accumulator class of this module that the registry names for ``metric``, set up from ``plan``."""
    return globals()[metric.accumulator].from_plan(metric, plan)
