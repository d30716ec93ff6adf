"""Re-posing a person of one's own photo: "put this person in that pose".

XingGAN renders the person of a source image in a target pose given as 18 keypoints. Here the
source is any photo: its keypoints come from a detector (:mod:`xinggan.keypoints`) or from a
file; the person is fitted into the model's frame (:mod:`xinggan.prep.framing`: the size of the
checkpoint's config, with the fill of its dataset: repeated border pixels for Market-1501,
white for DeepFashion); the target pose comes from another photo, a row of an annotation CSV
(``CSV:NAME``) or a JSON file, and is fitted into the same frame. The pose heatmaps are the
datasets' own (:func:`xinggan.data.pose_heatmaps` with the config's sigma).

A keypoints JSON file holds either ``{"keypoints_y": [18 ints], "keypoints_x": [18 ints]}`` (the
two columns of an annotation row) or a list of 18 ``[y, x]`` pairs; ``-1`` marks a missing joint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from xinggan.data.annotations import DataError, read_annotations
from xinggan.data.dataset import image_tensor
from xinggan.data.heatmaps import pose_heatmaps
from xinggan.joints import NUM_JOINTS
from xinggan.prep.framing import FRAME_PRESETS, check_joints, fit_keypoints, fit_to_frame
from xinggan.visualize import draw_skeleton, to_uint8

__all__ = ["ModelFrame", "frame_source", "frame_target", "generate", "is_keypoint_spec", "keypoints_from_spec",
           "panel"]


@dataclass(frozen=True)
class ModelFrame:
    """What a checkpoint's config says about its inputs: frame size, fill, heatmap sigma."""

    height: int
    width: int
    fill: str
    sigma: float

    @classmethod
    def from_config(cls, cfg, fill: Optional[str] = None) -> "ModelFrame":
        data = cfg.data
        return cls(int(data.height), int(data.width), fill or FRAME_PRESETS[data.dataset]["fill"],
                   float(data.heatmap_sigma))


def is_keypoint_spec(spec: str) -> bool:
    """Whether ``spec`` names keypoints (``CSV:NAME`` or ``*.json``) rather than a photo."""
    return _split_csv_spec(spec) is not None or spec.lower().endswith(".json")


def _split_csv_spec(spec: str) -> Optional[tuple[str, str]]:
    lowered = spec.lower()
    at = lowered.rfind(".csv:")
    if at < 0:
        return None
    return spec[: at + 4], spec[at + 5:]


def _keypoints_array(value, where: str) -> np.ndarray:
    if isinstance(value, dict):
        if "keypoints_y" not in value or "keypoints_x" not in value:
            raise DataError(f"{where}: expected the keys 'keypoints_y' and 'keypoints_x'")
        ys, xs = value["keypoints_y"], value["keypoints_x"]
        if not (isinstance(ys, list) and isinstance(xs, list) and len(ys) == len(xs) == NUM_JOINTS):
            raise DataError(f"{where}: 'keypoints_y' and 'keypoints_x' must be lists of {NUM_JOINTS} integers")
        pairs = list(zip(ys, xs))
    elif isinstance(value, list) and len(value) == NUM_JOINTS and all(
            isinstance(p, list) and len(p) == 2 for p in value):
        pairs = value
    else:
        raise DataError(f"{where}: expected {{'keypoints_y': [...], 'keypoints_x': [...]}} or a list "
                        f"of {NUM_JOINTS} [y, x] pairs")
    if not all(isinstance(v, int) and not isinstance(v, bool) for p in pairs for v in p):
        raise DataError(f"{where}: keypoints must be integers (pixels, -1 for a missing joint)")
    return np.asarray(pairs, dtype=np.int64).reshape(NUM_JOINTS, 2)


def keypoints_from_spec(spec: str) -> np.ndarray:
    """(18, 2) keypoints from ``CSV:NAME`` (a row of an annotation CSV) or a JSON file.

    Raises DataError naming the file (and the row name) when it cannot be read.
    """
    csv_spec = _split_csv_spec(spec)
    if csv_spec is not None:
        path, name = csv_spec
        if not name:
            raise DataError(f"{spec}: give the image name after the CSV path, CSV:NAME")
        table = read_annotations(path)
        if name not in table:
            raise DataError(f"{path}: no row for {name!r}")
        return table[name].copy()
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a JSON file ({exc})") from None
    return _keypoints_array(value, str(path))


def frame_source(image: np.ndarray, keypoints: np.ndarray, frame: ModelFrame, where: str,
                 as_is: bool = False, min_joints: int = 8, detector: Optional[str] = None):
    """(image, keypoints) of the source in the model's frame; DataError naming ``where``."""
    check_joints(keypoints, where, min_joints, detector)
    if as_is:
        if image.shape[:2] != (frame.height, frame.width):
            raise DataError(f"{where}: image is {image.shape[0]} x {image.shape[1]} (H x W); taken "
                            f"as is it must be the model's {frame.height} x {frame.width}")
        return image, np.asarray(keypoints, dtype=np.int64)
    framed = fit_to_frame(image, keypoints, frame.height, frame.width, frame.fill)
    return framed.image, framed.keypoints


def frame_target(keypoints: np.ndarray, frame: ModelFrame, where: str, as_is: bool = False,
                 min_joints: int = 8, detector: Optional[str] = None) -> np.ndarray:
    """The target keypoints in the model's frame; DataError naming ``where``."""
    check_joints(keypoints, where, min_joints, detector)
    if as_is:
        return np.asarray(keypoints, dtype=np.int64)
    return fit_keypoints(keypoints, frame.height, frame.width)


@torch.no_grad()
def generate(generator: torch.nn.Module, frame: ModelFrame, source_image: np.ndarray,
             source_keypoints: np.ndarray, target_keypoints: np.ndarray,
             device: str | torch.device = "cpu") -> np.ndarray:
    """The generated (H, W, 3) uint8 image: the source person in the target pose (float32)."""
    device = torch.device(device)
    src = image_tensor(source_image)[None].to(device)
    sp = pose_heatmaps(source_keypoints, frame.height, frame.width, frame.sigma)[None].to(device)
    tp = pose_heatmaps(target_keypoints, frame.height, frame.width, frame.sigma)[None].to(device)
    generator.eval()
    fake = generator(src, sp, tp).float()
    return to_uint8(fake[0])


def panel(source_image: np.ndarray, target_keypoints: np.ndarray, result: np.ndarray,
          gap: int = 2) -> np.ndarray:
    """source | target skeleton | result, side by side with white gaps."""
    h, w = result.shape[:2]
    tiles = [source_image, draw_skeleton(target_keypoints, h, w), result]
    spacer = np.full((h, gap, 3), 255, np.uint8)
    return np.concatenate([tiles[0], spacer, tiles[1], spacer, tiles[2]], axis=1)
