"""The PATN protocols' image steps: the released 8-bit truncation, the JPEG q75 round trip, DeepFashion's
white columns (docs/data_and_metrics.md)."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

__all__ = ["JPEG_QUALITY", "released_8bit", "jpeg_roundtrip", "pad_white_columns"]

JPEG_QUALITY = 75  # PIL's default, what Image.save(path.jpg) used in the released test code


def _released_8bit_table() -> np.ndarray:
    # ToTensor (u / 255) and Normalize(0.5, 0.5) in float32, then tensor2im's (x + 1) / 2 * 255
    # in float32 numpy and astype(uint8).
    x = torch.arange(256, dtype=torch.float32).div(255)
    x = x.sub(0.5).div(0.5).numpy()
    return ((x + 1) / 2.0 * 255.0).astype(np.uint8)


_RELEASED_8BIT = _released_8bit_table()


def released_8bit(images: np.ndarray) -> np.ndarray:
    """What the released test pipeline made of a uint8 dataset image: normalise, truncate back."""
    return _RELEASED_8BIT[images]


def jpeg_roundtrip(images: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """Encode each uint8 ``(B, H, W, 3)`` image as PIL JPEG at ``quality`` and decode it again."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded.convert("RGB"))
    return out


def pad_white_columns(images: np.ndarray, columns: int) -> np.ndarray:
    """Add ``columns`` white (255) columns on each side of uint8 ``(B, H, W, C)`` images."""
    if columns == 0:
        return images
    return np.pad(images, ((0, 0), (0, 0), (columns, columns), (0, 0)), constant_values=255)
