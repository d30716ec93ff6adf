"""MediaPipe Pose (BlazePose, Bazarevsky et al. 2020) as an 18-joint COCO-18 keypoint detector.

The legacy solution API of ``mediapipe==0.10.21`` with the full model shipped in the wheel
(runs offline); an optional dependency (``requirements-pose.txt``). Landmarks with visibility
>= 0.5 inside the image are kept; the neck is the midpoint of the two shoulders.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from xinggan.joints import JOINT_NAMES
from xinggan.keypoints import DetectorUnavailable, empty_keypoints

__all__ = ["LANDMARK_OF_JOINT", "MediaPipeDetector", "build_mediapipe_detector", "landmarks_to_keypoints"]

INSTALL_HINT = ("install the optional extra: pip install -r requirements-pose.txt "
                "(mediapipe==0.10.21 with numpy<2 and protobuf<5), or run make pose-venv")
VISIBILITY_THRESHOLD = 0.5
NUM_LANDMARKS = 33
# Joint -> MediaPipe landmark, for every joint but the neck, which is derived.
_LANDMARK_OF_NAME = {
    "nose": 0, "right_shoulder": 12, "right_elbow": 14, "right_wrist": 16, "left_shoulder": 11,
    "left_elbow": 13, "left_wrist": 15, "right_hip": 24, "right_knee": 26, "right_ankle": 28,
    "left_hip": 23, "left_knee": 25, "left_ankle": 27, "right_eye": 5, "left_eye": 2,
    "right_ear": 8, "left_ear": 7,
}
LANDMARK_OF_JOINT = {JOINT_NAMES.index(name): landmark for name, landmark in _LANDMARK_OF_NAME.items()}
_NECK, _R_SHOULDER, _L_SHOULDER = (JOINT_NAMES.index(n) for n in ("neck", "right_shoulder", "left_shoulder"))


def landmarks_to_keypoints(landmarks: np.ndarray, height: int, width: int,
                           threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
    """(33, 3) landmarks (x, y as fractions of ``width``, ``height``; visibility) -> (18, 2) int64 (y, x).

    Joints below ``threshold`` or outside the image are ``-1``; the neck needs both shoulders.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (NUM_LANDMARKS, 3):
        raise ValueError(f"expected (33, 3) landmarks (x, y, visibility), got {lm.shape}")
    out = empty_keypoints()
    position = {}  # joint -> float (y, x) of the kept joints
    for joint, index in LANDMARK_OF_JOINT.items():
        x_n, y_n, visibility = lm[index]
        if not visibility >= threshold:  # also drops NaN
            continue
        y, x = y_n * height, x_n * width
        yi, xi = int(round(y)), int(round(x))
        if not (0 <= yi < height and 0 <= xi < width):
            continue
        position[joint] = (y, x)
        out[joint] = (yi, xi)
    if _R_SHOULDER in position and _L_SHOULDER in position:
        y, x = (np.array(position[_R_SHOULDER]) + position[_L_SHOULDER]) / 2
        out[_NECK] = (int(round(y)), int(round(x)))
    return out


class MediaPipeDetector:
    """18 keypoints of the most prominent person in an RGB uint8 image, with MediaPipe Pose."""

    name = "mediapipe"

    def __init__(self, min_detection_confidence: float = 0.5,
                 visibility_threshold: float = VISIBILITY_THRESHOLD):
        try:
            import mediapipe as mp  # optional: the requirements-pose.txt extra
        except ImportError as exc:
            raise DetectorUnavailable(f"the mediapipe detector needs MediaPipe, which is not installed "
                                      f"({exc}); {INSTALL_HINT}") from None
        pose = getattr(getattr(mp, "solutions", None), "pose", None)
        if pose is None:
            raise DetectorUnavailable(f"MediaPipe {getattr(mp, '__version__', 'unknown')} has no legacy Pose "
                                      f"solution (removed from 0.10.30 on); {INSTALL_HINT}")
        self.visibility_threshold = float(visibility_threshold)
        try:
            # Complexity 1: the full landmark model inside the wheel (0 and 2 would download).
            self._pose = pose.Pose(static_image_mode=True, model_complexity=1,
                                   enable_segmentation=False,
                                   min_detection_confidence=float(min_detection_confidence))
        except (RuntimeError, OSError, ValueError) as exc:
            raise DetectorUnavailable(f"MediaPipe Pose could not start ({exc}); {INSTALL_HINT}") from None

    def detect(self, image: np.ndarray) -> np.ndarray:
        """``(18, 2)`` int64 ``(y, x)`` of ``image`` (H, W, 3) RGB uint8; all ``-1`` if nobody is found."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        result = self._pose.process(np.ascontiguousarray(image))
        if result.pose_landmarks is None:
            return empty_keypoints()
        landmarks = np.array([(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark],
                             dtype=np.float64)
        return landmarks_to_keypoints(landmarks, height, width, self.visibility_threshold)

    def close(self) -> None:
        self._pose.close()


def build_mediapipe_detector(weights: Optional[str] = None, **options) -> MediaPipeDetector:
    """The MediaPipe detector; it uses the model inside its package, so ``weights`` must be None."""
    if weights:
        raise ValueError(f"the mediapipe detector uses the model shipped inside its package and "
                         f"takes no weights file (got {weights})")
    return MediaPipeDetector(**options)

