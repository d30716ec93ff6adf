"""Keypoint detectors behind one interface: an RGB ``uint8`` image (H, W, 3) -> ``int64`` (18, 2)
``(y, x)`` pixels, ``-1`` for a joint not found (the annotation files' format).

:func:`build_detector` imports a detector's module only when asked for, so the optional
MediaPipe is never imported by the core: ``openpose`` (needs a local weights file) and
``mediapipe`` (the optional extra).
"""
from __future__ import annotations

import importlib
from typing import Optional, Protocol

import numpy as np

from xinggan.data.annotations import MISSING
from xinggan.joints import NUM_JOINTS

__all__ = ["DETECTORS", "Detector", "DetectorUnavailable", "build_detector", "empty_keypoints"]


class DetectorUnavailable(RuntimeError):
    """A detector cannot run here (missing optional package or weights); the message says what to provide."""


class Detector(Protocol):
    """Anything with ``detect(image) -> (18, 2)`` int64 ``(y, x)``, ``-1`` for a missing joint."""

    name: str

    def detect(self, image: np.ndarray) -> np.ndarray: ...


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
