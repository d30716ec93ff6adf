"""Fitting the person of any photo into a model's frame (Market 128 x 64, border fill; DeepFashion
256 x 176, white), keypoints and image through the same crop and scale.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..data.annotations import MISSING, DataError
from ..joints import JOINT_NAMES, NUM_JOINTS

__all__ = ["FILLS", "FRAME_PRESETS", "DEFAULT_MARGIN", "MIN_JOINTS", "Framed", "check_joints", "fit_keypoints",
           "fit_to_frame", "frame_box", "present_joints", "read_photo"]

# Frame size (H, W) and the fill of each dataset's framing.
FRAME_PRESETS = {"market": {"size": (128, 64), "fill": "border"}, "deepfashion": {"size": (256, 176), "fill": "white"}}
FILLS = ("border", "white")
# Margin around the keypoints' box, a fraction of its height: room for the head top and the feet.
DEFAULT_MARGIN = 0.12
# Fewest joints a pose must have to frame a person and drive a model.
MIN_JOINTS = 8


def present_joints(keypoints: np.ndarray) -> np.ndarray:
    """Boolean (18,) mask of the joints that are not missing."""
    kp = np.asarray(keypoints)
    return (kp[:, 0] != MISSING) & (kp[:, 1] != MISSING)


def check_joints(keypoints: np.ndarray, where: str, min_joints: int = MIN_JOINTS,
                 detector: str | None = None) -> int:
    """The number of present joints; DataError naming ``where`` if nobody or too few were found."""
    present = present_joints(keypoints)
    count = int(present.sum())
    by = f" by the {detector} detector" if detector else ""
    if count == 0:
        raise DataError(f"{where}: no person found{by}")
    if count < min_joints:
        missing = ", ".join(JOINT_NAMES[j] for j in np.flatnonzero(~present))
        raise DataError(f"{where}: only {count} of {NUM_JOINTS} joints found{by} (missing: {missing}); "
                        f"at least {min_joints} are needed")
    return count


def read_photo(path: str | os.PathLike, upright: bool = True) -> np.ndarray:
    """An image file of any mode as RGB uint8 (H, W, 3), turned by its EXIF orientation with
    ``upright``; DataError naming the file if it is not an image."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if upright:
                img = ImageOps.exif_transpose(img)
            if img.mode.startswith("I"):  # 16/32-bit greyscale: to 8 bits by its range
                values = np.asarray(img, dtype=np.float64)
                top = 65535.0 if values.max() > 255 else 255.0
                img = Image.fromarray(np.clip(values / top * 255.0, 0, 255).astype(np.uint8))
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    return np.asarray(rgb, dtype=np.uint8).copy()


@dataclass(frozen=True)
class Framed:
    """A photo fitted into a frame; photo pixel ``p`` (y or x) lands at ``(p + 0.5 - origin) * scale - 0.5``."""

    image: np.ndarray  # (H, W, 3) uint8
    keypoints: np.ndarray  # (18, 2) int64 (y, x) in the frame, -1 missing
    origin: tuple[float, float]  # (y, x) of the frame's top-left corner in the photo
    scale: float  # frame pixels per photo pixel

    def map_keypoints(self, keypoints: np.ndarray) -> np.ndarray:
        """Other keypoints of the same photo, in the frame (``-1`` stays ``-1``)."""
        return _map(keypoints, self.origin, self.scale)


def frame_box(keypoints: np.ndarray, height: int, width: int,
              margin: float = DEFAULT_MARGIN) -> tuple[float, float, float, float]:
    """``(top, left, box height, box width)`` in photo pixels: the present joints' box grown by
    ``margin`` times its height on every side, then brought to the frame's aspect about its centre."""
    kp = np.asarray(keypoints, dtype=np.float64)
    present = present_joints(kp)
    if present.sum() < 2:
        raise ValueError("need at least two joints to frame a person")
    # Pixel edges (not centres) of the joints' box.
    y0, x0 = kp[present].min(axis=0)
    y1, x1 = kp[present].max(axis=0) + 1.0
    pad = margin * (y1 - y0)
    y0, y1, x0, x1 = y0 - pad, y1 + pad, x0 - pad, x1 + pad
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    box_h = max(y1 - y0, (x1 - x0) * height / width)
    box_w = box_h * width / height
    return cy - box_h / 2, cx - box_w / 2, box_h, box_w


def _map(keypoints: np.ndarray, origin: tuple[float, float], scale: float) -> np.ndarray:
    kp = np.asarray(keypoints)
    if kp.shape != (NUM_JOINTS, 2):
        raise ValueError(f"keypoints must have shape (18, 2), got {kp.shape}")
    present = present_joints(kp)
    mapped = (kp.astype(np.float64) + 0.5 - np.asarray(origin)) * scale - 0.5
    out = np.full((NUM_JOINTS, 2), MISSING, dtype=np.int64)
    out[present] = np.rint(mapped[present]).astype(np.int64)
    # A joint mapped exactly onto -1 would read as missing: keep it inside the frame.
    out[present] = np.maximum(out[present], 0)
    return out


def fit_keypoints(keypoints: np.ndarray, height: int, width: int,
                  margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The keypoints alone fitted into a ``height`` x ``width`` frame as :func:`fit_to_frame` does."""
    top, left, box_h, _ = frame_box(keypoints, height, width, margin)
    return _map(keypoints, (top, left), height / box_h)


def fit_to_frame(image: np.ndarray, keypoints: np.ndarray, height: int, width: int,
                 fill: str = "border", margin: float = DEFAULT_MARGIN) -> Framed:
    """Crop the person of ``image`` by its ``keypoints`` and scale it to ``height`` x ``width``,
    ``fill`` (``"border"`` or ``"white"``) beyond the photo's edges."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    top, left, box_h, box_w = frame_box(keypoints, height, width, margin)
    rows, cols = image.shape[:2]
    # Pad the photo so the crop box lies inside it, then let PIL resample the (float) box.
    pad_top, pad_left, pad_bottom, pad_right = (max(0, int(np.ceil(beyond)) + 1) for beyond in
                                                (-top, -left, top + box_h - rows, left + box_w - cols))
    widths = ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0))
    padded = np.pad(image, widths, mode="edge") if fill == "border" else np.pad(image, widths, constant_values=255)
    box = (left + pad_left, top + pad_top, left + pad_left + box_w, top + pad_top + box_h)
    framed = Image.fromarray(padded).resize((width, height), Image.BICUBIC, box=box)
    scale, origin = height / box_h, (top, left)
    return Framed(image=np.asarray(framed, dtype=np.uint8).copy(),
                  keypoints=_map(keypoints, origin, scale), origin=origin, scale=scale)
