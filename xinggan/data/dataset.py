"""The paired dataset of XingGAN (Sec. 3): (source image, source pose, target pose) -> target image.

Reads the prepared PATN layout (``<root>/{train,test}/``, ``*-annotation-*.csv``,
``*-pairs-*.csv``). Items hold uint8 images and (18, 2) keypoints; :func:`model_inputs` makes
the networks' inputs on the device. The index picks the pair; no flip augmentation (as released).
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .annotations import DataError, build_pairs, deepfashion_flat_name, read_annotations, read_pairs
from .heatmaps import pose_heatmaps

__all__ = ["LAYOUTS", "PairDataset", "detect_layout", "image_tensor", "load_image", "model_inputs",
           "resolve_files"]

log = logging.getLogger(__name__)

# Default file names of each prepared layout; ``{split}`` is "train" or "test".
LAYOUTS = {
    "market": {
        "annotations": "market-annotation-{split}.csv",
        "pairs": "market-pairs-{split}.csv",
        "size": (128, 64),
    },
    "deepfashion": {
        "annotations": "fasion-resize-annotation-{split}.csv",
        "pairs": "fasion-resize-pairs-{split}.csv",
        "size": (256, 176),
    },
}
_SHOWN = 5  # problems listed by name before the count


def detect_layout(root: str | os.PathLike, split: str) -> str:
    """"market" or "deepfashion", from which default annotation file exists for ``split``."""
    root = Path(root)
    found = [
        layout for layout, files in LAYOUTS.items()
        if (root / files["annotations"].format(split=split)).is_file()
    ]
    if len(found) == 1:
        return found[0]
    expected = " or ".join(str(root / f["annotations"].format(split=split)) for f in LAYOUTS.values())
    if not found:
        if not root.is_dir():
            raise DataError(f"{root}: dataset folder not found (see datasets/README.md)")
        raise DataError(f"{root}: no annotation file for split {split!r}: expected {expected} "
                        "(see datasets/README.md)")
    raise DataError(f"{root}: both {expected} exist; name the annotation file explicitly")


def resolve_files(root: str | os.PathLike, split: str, annotations_file: str | os.PathLike | None = None,
                  pairs_file: str | os.PathLike | None = None) -> tuple[str, Path, Path]:
    """(layout, annotation path, pairs path): explicit names are relative to ``root``."""
    root = Path(root)
    if annotations_file:
        annotations_path = root / annotations_file
        layout = "deepfashion" if Path(annotations_file).name.startswith("fasion") else "market"
    else:
        layout = detect_layout(root, split)
        annotations_path = root / LAYOUTS[layout]["annotations"].format(split=split)
    pairs_path = root / (pairs_file or LAYOUTS[layout]["pairs"].format(split=split))
    return layout, annotations_path, pairs_path


def _summary(problems: Sequence[str], what: str) -> str:
    shown = "; ".join(problems[:_SHOWN])
    more = f"; ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    return f"{len(problems)} {what}: {shown}{more}"


def load_image(path: Path, height: int, width: int) -> torch.Tensor:
    """Decode an RGB image to a (3, H, W) uint8 tensor; DataError naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None
    if rgb.size != (width, height):
        raise DataError(f"{path}: image is {rgb.height} x {rgb.width} (H x W), "
                        f"expected {height} x {width}")
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [-1, 1]: the arithmetic of ToTensor + Normalize((0.5,) * 3, (0.5,) * 3)."""
    return (pixels.float().div(255.0) - 0.5) / 0.5


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """An (H, W, 3) RGB uint8 array as the model's (3, H, W) float32 input in [-1, 1]."""
    return _normalise(torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1))


@functools.lru_cache(maxsize=None)
def _byte_values(device: torch.device) -> torch.Tensor:
    """The 256 normalised byte values, computed on the CPU and kept on ``device``: CUDA divides
    by a scalar as a product with its reciprocal, one bit off for half the bytes."""
    return _normalise(torch.arange(256, dtype=torch.uint8)).to(device)


_ITEM_TENSORS = ("source_image", "target_image", "source_keypoints", "target_keypoints")


def model_inputs(batch: dict, device: str | torch.device, sigma: float,
                 memory_format: torch.memory_format = torch.contiguous_format) -> dict:
    """The networks' inputs on ``device`` from an item or batch: images in [-1, 1] (as
    :func:`image_tensor`), pose heatmaps (..., 18, H, W); names pass through."""
    out = {k: v for k, v in batch.items() if k not in _ITEM_TENSORS}
    for side in ("source", "target"):
        pixels = batch[f"{side}_image"].to(device, non_blocking=True)
        keypoints = batch[f"{side}_keypoints"].to(device, non_blocking=True)
        image = _byte_values(pixels.device)[pixels.int()]
        pose = pose_heatmaps(keypoints, pixels.shape[-2], pixels.shape[-1], sigma)
        for key, value in ((f"{side}_image", image), (f"{side}_pose", pose)):
            out[key] = value.to(memory_format=memory_format) if value.dim() == 4 else value
    return out


class PairDataset(Dataset):
    """(source, target) pairs of one split: uint8 images and (18, 2) keypoints (y, x), -1 missing.
    Construction reports every missing annotation or image at once."""

    def __init__(self, root: str | os.PathLike, split: str, height: int, width: int,
                 annotations_file: str | os.PathLike | None = None,
                 pairs_file: str | os.PathLike | None = None, sigma: float = 6.0,
                 pairs: Sequence[tuple[str, str]] | None = None):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.root = Path(root)
        self.split = split
        self.height = int(height)
        self.width = int(width)
        self.sigma = float(sigma)
        self.image_dir = self.root / split
        self.layout, self.annotations_path, pairs_path = resolve_files(
            self.root, split, annotations_file, pairs_file)
        normalise = deepfashion_flat_name if self.layout == "deepfashion" else (lambda n: n)

        self.annotations = {normalise(k): v for k, v in read_annotations(self.annotations_path).items()}
        if pairs is not None:
            self.pairs_path = None
            raw_pairs = list(pairs)
        elif pairs_path.is_file():
            self.pairs_path = pairs_path
            raw_pairs = read_pairs(pairs_path)
        elif self.layout == "market" and split == "train" and not pairs_file:
            self.pairs_path = None
            raw_pairs = build_pairs(self.annotations)
            log.info("%s not found: rebuilt %d Market training pairs from %s", pairs_path,
                     len(raw_pairs), self.annotations_path.name)
        else:
            raise DataError(f"{pairs_path}: pairs file not found (see datasets/README.md)")
        self.pairs = [(normalise(a), normalise(b)) for a, b in raw_pairs]
        if not self.pairs:
            raise DataError(f"{self.pairs_path or self.annotations_path}: no pairs for split {split!r}")
        self._check()

    def _check(self) -> None:
        names = sorted({n for pair in self.pairs for n in pair})
        where = self.pairs_path or "the pairs"
        problems = []
        unannotated = [n for n in names if n not in self.annotations]
        if unannotated:
            problems.append(_summary(
                unannotated, f"image names in {where} have no row in {self.annotations_path}"))
        if not self.image_dir.is_dir():
            problems.append(f"{self.image_dir}: image folder not found")
        else:
            present = set(os.listdir(self.image_dir))
            missing = [str(self.image_dir / n) for n in names if n not in present]
            if missing:
                problems.append(_summary(missing, f"images of {where} are missing"))
        if problems:
            raise DataError("\n".join(problems))

    @classmethod
    def from_config(cls, data_cfg, split: str) -> "PairDataset":
        """Build from the ``data`` section of the config (file names relative to ``root``)."""
        annotations = data_cfg.train_annotations if split == "train" else data_cfg.test_annotations
        pairs = data_cfg.train_pairs if split == "train" else data_cfg.test_pairs
        return cls(data_cfg.root, split, data_cfg.height, data_cfg.width,
                   annotations_file=annotations or None, pairs_file=pairs or None,
                   sigma=data_cfg.heatmap_sigma)

    def __len__(self) -> int:
        return len(self.pairs)

    def image(self, name: str) -> torch.Tensor:
        """The (3, H, W) uint8 image."""
        return load_image(self.image_dir / name, self.height, self.width)

    def keypoints(self, name: str) -> torch.Tensor:
        """The (18, 2) float32 keypoints (y, x) of an image, -1 for a missing joint."""
        return torch.from_numpy(self.annotations[name].astype(np.float32))

    def __getitem__(self, index: int) -> dict:
        source, target = self.pairs[index]
        return {
            "source_image": self.image(source),
            "source_keypoints": self.keypoints(source),
            "target_image": self.image(target),
            "target_keypoints": self.keypoints(target),
            "source_name": source,
            "target_name": target,
        }

    def __repr__(self) -> str:
        return (f"PairDataset({self.layout}, split={self.split!r}, {len(self)} pairs, "
                f"{self.height}x{self.width}, root={str(self.root)!r})")
