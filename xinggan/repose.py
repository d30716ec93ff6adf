"""Re-posing the person of one's own photo: "put this person in that pose".

Source and target keypoints come from a detector, an annotation CSV row (``CSV:NAME``) or a JSON
file (``{"keypoints_y": [...], "keypoints_x": [...]}`` or 18 ``[y, x]`` pairs, -1 missing);
both are fitted into the model's frame (:mod:`xinggan.prep.framing`). Several targets make a GIF.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import GifImagePlugin, Image

from xinggan.checkpoint import CheckpointError, load_checkpoint
from xinggan.data.annotations import DataError, read_annotations
from xinggan.data.dataset import image_tensor
from xinggan.data.heatmaps import pose_heatmaps
from xinggan.inference import embedded_config, load_generator
from xinggan.joints import JOINT_NAMES, NUM_JOINTS
from xinggan.models import build_generator
from xinggan.precision import autocast
from xinggan.prep.framing import (FRAME_PRESETS, Framed, check_joints, fit_keypoints, fit_to_frame,
                                  present_joints)
from xinggan.released.convert import convert_released_state_dict, load_released_state_dict
from xinggan.visualize import draw_skeleton, to_uint8

__all__ = ["ModelFrame", "check_inside", "frame_source", "frame_target", "generate", "is_keypoint_spec",
           "keypoints_from_json", "keypoints_from_spec", "load_model", "panel", "parse_keypoints", "save_gif"]


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


def load_model(path: str | Path, config=None, device: str | torch.device = "cpu"):
    """(generator, config) of an xinggan checkpoint, or of the authors' released ``netG`` file
    converted on load to the network ``config`` describes; CheckpointError naming the file."""
    try:
        state = load_checkpoint(path)
    except CheckpointError:
        if config is None:
            raise
        state = None
    if state is not None:
        return load_generator(path, device=device, state=state), embedded_config(state, path)
    weights = convert_released_state_dict("generator", load_released_state_dict(path), config)
    with torch.device("meta"):
        generator = build_generator(config)
    generator.load_state_dict(weights, strict=True, assign=True)
    return generator.to(device).eval(), config


def is_keypoint_spec(spec: str) -> bool:
    """Whether ``spec`` names keypoints (``CSV:NAME`` or ``*.json``) rather than a photo."""
    return _split_csv_spec(spec) is not None or spec.lower().endswith(".json")


def _split_csv_spec(spec: str) -> Optional[tuple[str, str]]:
    lowered = spec.lower()
    at = lowered.rfind(".csv:")
    if at < 0:
        return None
    return spec[: at + 4], spec[at + 5:]


def parse_keypoints(value, where: str) -> np.ndarray:
    """(18, 2) int64 keypoints of a decoded keypoints JSON value; DataError naming ``where``."""
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
    kp = np.asarray(pairs, dtype=np.int64).reshape(NUM_JOINTS, 2)
    check_inside(kp, where)
    return kp


def check_inside(kp: np.ndarray, where: str, height: Optional[int] = None,
                  width: Optional[int] = None) -> None:
    """DataError naming the first present joint that lies off the image (negative, or past its size)."""
    limit = np.array([height or np.iinfo(np.int64).max, width or np.iinfo(np.int64).max])
    present = present_joints(kp)
    off = present & ((kp < 0).any(axis=1) | (kp >= limit).any(axis=1))
    if off.any():
        j = int(np.flatnonzero(off)[0])
        size = f" the {height} x {width} image" if height else " the image"
        raise DataError(f"{where}: joint {JOINT_NAMES[j]} at (y, x) = ({kp[j, 0]}, {kp[j, 1]}) lies "
                        f"outside{size} (-1 marks a missing joint)")


def keypoints_from_json(text: str, where: str) -> np.ndarray:
    """(18, 2) keypoints from the text of a keypoints JSON; DataError naming ``where``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc})") from None
    return parse_keypoints(value, where)


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
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a JSON file ({exc})") from None
    return keypoints_from_json(text, str(path))


def frame_source(image: np.ndarray, keypoints: np.ndarray, frame: ModelFrame, where: str,
                 as_is: bool = False, min_joints: int = 8, detector: Optional[str] = None) -> Framed:
    """The source fitted into the model's frame (image, keypoints, crop); DataError naming ``where``."""
    check_joints(keypoints, where, min_joints, detector)
    check_inside(np.asarray(keypoints), where, *image.shape[:2])
    if as_is:
        if image.shape[:2] != (frame.height, frame.width):
            raise DataError(f"{where}: image is {image.shape[0]} x {image.shape[1]} (H x W); taken "
                            f"as is it must be the model's {frame.height} x {frame.width}")
        return Framed(image, np.asarray(keypoints, dtype=np.int64), (0.0, 0.0), 1.0)
    return fit_to_frame(image, keypoints, frame.height, frame.width, frame.fill)


def frame_target(keypoints: np.ndarray, frame: ModelFrame, where: str, as_is: bool = False,
                 min_joints: int = 8, detector: Optional[str] = None) -> np.ndarray:
    """The target keypoints in the model's frame; DataError naming ``where``."""
    check_joints(keypoints, where, min_joints, detector)
    check_inside(np.asarray(keypoints), where, *((frame.height, frame.width) if as_is else ()))
    if as_is:
        return np.asarray(keypoints, dtype=np.int64)
    return fit_keypoints(keypoints, frame.height, frame.width)


@torch.no_grad()
def generate(generator: torch.nn.Module, frame: ModelFrame, source_image: np.ndarray,
             source_keypoints: np.ndarray, target_keypoints: np.ndarray,
             device: str | torch.device = "cpu", amp_dtype: Optional[torch.dtype] = None) -> np.ndarray:
    """The generated (H, W, 3) uint8 image: the source person in the target pose (float32, or
    under autocast to ``amp_dtype``)."""
    device = torch.device(device)
    src = image_tensor(source_image)[None].to(device)
    sp = pose_heatmaps(source_keypoints, frame.height, frame.width, frame.sigma)[None].to(device)
    tp = pose_heatmaps(target_keypoints, frame.height, frame.width, frame.sigma)[None].to(device)
    generator.eval()
    with autocast(device, amp_dtype):
        fake = generator(src, sp, tp).float()
    return to_uint8(fake[0])


def panel(source_image: np.ndarray, target_keypoints: np.ndarray, result: np.ndarray,
          gap: int = 2) -> np.ndarray:
    """source | target skeleton | result, side by side with white gaps."""
    h, w = result.shape[:2]
    tiles = [source_image, draw_skeleton(target_keypoints, h, w), result]
    spacer = np.full((h, gap, 3), 255, np.uint8)
    return np.concatenate([tiles[0], spacer, tiles[1], spacer, tiles[2]], axis=1)


def save_gif(frames: Sequence[np.ndarray], path: str | Path, frame_ms: int = 400) -> Path:
    """Write (H, W, 3) uint8 frames as a looping GIF, one GIF frame each, on one shared palette.

    Written frame by frame with Pillow's GIF encoder: ``save_all`` would merge identical
    neighbours, and a pose sequence keeps one frame per pose.
    """
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    h, w = frames[0].shape[:2]
    strip = Image.fromarray(np.concatenate(frames, axis=0)).quantize(256)  # one adaptive palette
    parts = [strip.crop((0, k * h, w, (k + 1) * h)) for k in range(len(frames))]
    header, _ = GifImagePlugin.getheader(parts[0], info={"loop": 0, "optimize": False})
    path = Path(path)
    with open(path, "wb") as fp:
        fp.writelines(header)
        for part in parts:
            fp.writelines(GifImagePlugin.getdata(part, duration=frame_ms))
        fp.write(b";")  # GIF trailer
    return path
