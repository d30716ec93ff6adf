"""One accumulator per metric: ``update(batch)`` for each batch of pairs, ``result()`` at the end.

Each accumulator keeps only what its final value needs, so an evaluation streams any number of
pairs in bounded memory:

* SSIM, mask-SSIM, LPIPS, mask-LPIPS, PSNR and L1 keep one score per pair and report the mean over
  pairs, ``(1 / N) sum_i s_i``. SSIM runs in the protocol's padded frame, on ``uint8`` values or
  on ``float32(x) / 255`` (:attr:`~xinggan.metrics.protocols.Protocol.ssim_input`); LPIPS and L1
  on ``x / 127.5 - 1``; PSNR on ``x / 255``. The masked variants multiply both images by the
  target's pose mask first (:mod:`xinggan.metrics.mask`).
* IS and mask-IS keep the ``(N, 1008)`` unbiased logits (float32) of the TF-ported Inception and
  report ``exp(E_x KL(p(y|x) || p(y)))`` over 10 contiguous splits, mean and std
  (:func:`~xinggan.metrics.inception_score.inception_score_from_logits`); mask-IS scores the
  generated image times the target's pose mask.
* FID keeps running sums of the generated images' 2048-d pool features and, at the end, compares
  their Gaussian with the real set's (cached): ``|mu_g - mu_r|^2 + Tr(S_g + S_r - 2 sqrtm(S_g S_r))``
  (:mod:`xinggan.metrics.fid`).
* PCKh keeps the keypoints detected on each generated image (or takes them from a CSV) and reports
  correct joints / present target joints (:mod:`xinggan.metrics.pckh`).

:data:`RESULT_ORDER` is the order of the metrics in ``metrics.json``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..data import write_annotations
from .fid import RunningStatistics, frechet_distance, real_statistics
from .inception_score import inception_score_from_logits
from .inputs import Batch, EvaluationInputError, image_size, load_rgb, to_tensor
from .l1 import l1_distance
from .pckh import pckh
from .protocols import Protocol, jpeg_roundtrip, released_8bit
from .psnr import psnr
from .ssim import ssim

__all__ = [
    "RESULT_ORDER", "Accumulator", "MeanOverPairs", "SSIMAccumulator", "MaskedSSIMAccumulator",
    "LPIPSAccumulator", "MaskedLPIPSAccumulator", "PSNRAccumulator", "L1Accumulator",
    "InceptionScoreAccumulator", "MaskedInceptionScoreAccumulator", "FIDAccumulator", "PCKhAccumulator",
]

RESULT_ORDER = ("ssim", "mask_ssim", "lpips", "mask_lpips", "psnr", "l1", "is", "mask_is", "fid", "pckh")
INCEPTION_LOGITS = 1008  # classes of TensorFlow's 2015 Inception graph (1000 ImageNet classes + 8 unused)


class Accumulator:
    """One metric over the pairs of an evaluation.

    ``streams``: whether it reads the images (``update`` is called for every batch); ``result()``
    returns its entries of ``metrics.json``, ``details()`` its entries of ``details``.
    """

    name = ""
    streams = True

    def update(self, batch: Batch) -> None:
        raise NotImplementedError

    def result(self) -> dict:
        raise NotImplementedError

    def details(self) -> dict:
        return {}


class MeanOverPairs(Accumulator):
    """A score per pair (``score(batch)`` -> ``(B,)``), reported as the mean over pairs."""

    def __init__(self, num_pairs: int):
        # Preallocated: keeping many small arrays alive between the large per-batch buffers
        # fragments the heap and grows memory with the number of pairs.
        self.scores = np.empty(num_pairs)

    def score(self, batch: Batch) -> np.ndarray:
        raise NotImplementedError

    def update(self, batch: Batch) -> None:
        self.scores[batch.start:batch.stop] = self.score(batch)

    def result(self) -> dict:
        return {self.name: float(self.scores.mean())}


class SSIMAccumulator(MeanOverPairs):
    """SSIM of the protocol's settings, in its padded frame."""

    name = "ssim"

    def __init__(self, num_pairs: int, protocol: Protocol):
        super().__init__(num_pairs)
        self.settings = protocol.ssim
        self.unit_range = protocol.ssim_input != "uint8"

    def images(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return batch.generated_padded, batch.target_padded

    def score(self, batch: Batch) -> np.ndarray:
        generated, target = self.images(batch)
        if self.unit_range:
            generated, target = generated.to(torch.float32) / 255.0, target.to(torch.float32) / 255.0
        return ssim(generated, target, self.settings).cpu().numpy()


class MaskedSSIMAccumulator(SSIMAccumulator):
    """mask-SSIM: SSIM of both images times the target's pose mask."""

    name = "mask_ssim"

    def images(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return batch.generated_padded * batch.masks_padded, batch.target_padded * batch.masks_padded


class LPIPSAccumulator(MeanOverPairs):
    """LPIPS (AlexNet, v0.1) on images in [-1, 1]."""

    name = "lpips"

    def __init__(self, num_pairs: int, network: torch.nn.Module):
        super().__init__(num_pairs)
        self.network = network

    def images(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return batch.signed

    def score(self, batch: Batch) -> np.ndarray:
        return self.network(*self.images(batch)).numpy()


class MaskedLPIPSAccumulator(LPIPSAccumulator):
    """mask-LPIPS: LPIPS of both [-1, 1] images times the target's pose mask."""

    name = "mask_lpips"

    def images(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        generated, target = batch.signed
        return generated * batch.masks, target * batch.masks


class PSNRAccumulator(MeanOverPairs):
    """PSNR with data range 1 on ``x / 255``."""

    name = "psnr"

    def score(self, batch: Batch) -> np.ndarray:
        unit = (batch.generated.to(torch.float32) / 255.0, batch.target.to(torch.float32) / 255.0)
        return psnr(*unit).cpu().numpy()


class L1Accumulator(MeanOverPairs):
    """Mean absolute error in [-1, 1]."""

    name = "l1"

    def score(self, batch: Batch) -> np.ndarray:
        return l1_distance(*batch.signed).cpu().numpy()


class InceptionScoreAccumulator(Accumulator):
    """IS of the generated images (in the padded frame) from the TF-ported Inception's logits."""

    name = "is"

    def __init__(self, num_pairs: int, network: torch.nn.Module):
        self.network = network
        self.logits = np.empty((num_pairs, INCEPTION_LOGITS), dtype=np.float32)

    def images(self, batch: Batch) -> torch.Tensor:
        return batch.generated_padded

    def update(self, batch: Batch) -> None:
        self.logits[batch.start:batch.stop] = self.network(self.images(batch))["logits_unbiased"].numpy()

    def result(self) -> dict:
        mean, std = inception_score_from_logits(self.logits)
        return {self.name: mean, f"{self.name}_std": std}


class MaskedInceptionScoreAccumulator(InceptionScoreAccumulator):
    """mask-IS: IS of the generated images times the target's pose mask."""

    name = "mask_is"

    def images(self, batch: Batch) -> torch.Tensor:
        return batch.generated_padded * batch.masks_padded


class FIDAccumulator(Accumulator):
    """FID of the generated images against a folder of real images.

    ``features``: uint8 ``(B, 3, H, W)`` -> ``(B, 2048)`` of the protocol's FID network. The real
    images get the same step 1 as the targets when the round trip is on; their statistics are
    cached per protocol, network, file list and resolution (:func:`~xinggan.metrics.fid.real_statistics`).
    """

    name = "fid"

    def __init__(self, features: Callable[[torch.Tensor], torch.Tensor], real_paths: Sequence[Path],
                 protocol: Protocol, roundtrip: bool, device: torch.device, batch_size: int = 64,
                 cache_dir: Optional[Path] = None, progress: bool = True):
        self.features, self.real_paths, self.protocol = features, list(real_paths), protocol
        self.roundtrip, self.device, self.batch_size = roundtrip, device, batch_size
        self.cache_dir, self.progress = cache_dir, progress
        self.generated = RunningStatistics()

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

    name = "pckh"

    def __init__(self, target_keypoints: np.ndarray, detections: Optional[list] = None, detector=None,
                 resave_jpeg: bool = False, pose_weights: Optional[str] = None,
                 detections_csv: Optional[Path] = None, generated_names: Sequence[str] = ()):
        if (detections is None) == (detector is None):
            raise ValueError("PCKh needs either detections or a detector")
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
        return {self.name: self._scored["pckh"]}

    def details(self) -> dict:
        details = {}
        if self.detector is not None:
            details["pckh_detector"] = f"openpose ({Path(self.pose_weights).name})"
            if self.detections_csv is not None:
                details["pckh_detections"] = str(self.detections_csv)
        if self._scored is not None:
            details["pckh"] = {k: v for k, v in self._scored.items() if k != "pckh"}
        return details
