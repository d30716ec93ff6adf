"""Keypoint detectors: 18 OpenPose COCO-18 joints from a photo, behind one interface.

Every detector takes one RGB ``uint8`` image ``(H, W, 3)`` and returns an ``int64`` array
``(18, 2)`` of ``(y, x)`` pixel coordinates in that image, with ``-1``
(:data:`xinggan.data.annotations.MISSING`) for a joint it did not find: the format of the
annotation CSVs that the datasets ship (:mod:`xinggan.data.annotations`).

Detectors are built by name with :func:`build_detector`; each lives in its own module, imported
only when asked for, so that an optional dependency (MediaPipe) is never imported by the core:

* ``openpose``: CMU's OpenPose COCO body model with the post-processing of the PATN / XingGAN
  evaluation (needs a local weights file), :mod:`xinggan.keypoints.openpose`;
* ``mediapipe``: MediaPipe Pose (legacy solution, full model shipped in the wheel), mapped to the
  18 joints, :mod:`xinggan.keypoints.mediapipe_pose`.
"""
from __future__ import annotations

import importlib
from typing import Optional, Protocol

import numpy as np

from xinggan.data.annotations import MISSING
from xinggan.joints import NUM_JOINTS

__all__ = ["DETECTORS", "Detector", "DetectorUnavailable", "MISSING", "NUM_JOINTS", "build_detector",
           "empty_keypoints"]


class DetectorUnavailable(RuntimeError):
    """A detector cannot run here (missing optional package or weights); the message says what to provide."""


class Detector(Protocol):
    """Anything with ``detect(image) -> (18, 2)`` int64 ``(y, x)``, ``-1`` for a missing joint."""

    name: str

    def detect(self, image: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        ...


def empty_keypoints() -> np.ndarray:
    """An ``(18, 2)`` array with every joint missing."""
    return np.full((NUM_JOINTS, 2), MISSING, dtype=np.int64)


# name -> (module, factory function); the module is imported only when the detector is built.
DETECTORS = {
    "openpose": ("xinggan.keypoints.openpose", "build_openpose_detector"),
    "mediapipe": ("xinggan.keypoints.mediapipe_pose", "build_mediapipe_detector"),
}


def build_detector(name: str, weights: Optional[str] = None, **options) -> Detector:
    """The detector called ``name`` (``weights``: a local weights file, where the detector needs one)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown keypoint detector {name!r}; choose one of {sorted(DETECTORS)}")
    module_name, factory = DETECTORS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:  # an optional package the detector needs
        raise DetectorUnavailable(f"the {name} detector is not available in this installation "
                                  f"({error})") from None
    return getattr(module, factory)(weights=weights, **options)
