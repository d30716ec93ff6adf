"""Whole-dataset verification: every problem of a prepared dataset folder, reported at once.

Used by ``scripts/check_dataset.py`` and by the preparation scripts after they write a
dataset. For each split it checks the annotation file (every malformed row), the pairs file
(malformed rows, names without annotations), and every image named by the annotations or the
pairs (missing, unreadable or truncated, wrong size), and flags empty splits. A missing Market
training pairs file is not a problem: :class:`~xinggan.data.PairDataset` rebuilds it.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from PIL import Image
from xinggan.progress import progress as progress_bar

from ..data.annotations import DataError, build_pairs, deepfashion_flat_name, parse_annotation_file, parse_pairs_file
from ..data.dataset import LAYOUTS, detect_layout

__all__ = ["check_dataset"]


class _Problems:
    """Problems grouped by kind, each kind capped at ``max_per_kind`` listed messages."""

    def __init__(self, max_per_kind: int | None):
        self.max_per_kind = max_per_kind
        self.kinds: dict[str, list[str]] = defaultdict(list)

    def add(self, kind: str, message: str) -> None:
        self.kinds[kind].append(message)

    def extend(self, kind: str, messages: Iterable[str]) -> None:
        for m in messages:
            self.add(kind, m)

    def report(self) -> list[str]:
        out = []
        for kind, messages in self.kinds.items():
            cap = len(messages) if self.max_per_kind is None else self.max_per_kind
            out.extend(messages[:cap])
            if len(messages) > cap:
                out.append(f"... and {len(messages) - cap} more: {kind} "
                           f"({len(messages)} in all)")
        return out


def _check_image(path: Path, height: int, width: int, decode: bool) -> tuple[str, str] | None:
    """(kind, message) of the image's problem, or None."""
    try:
        with Image.open(path) as img:
            if decode:
                img.load()
            size = img.size
    except FileNotFoundError:
        return "missing images", f"{path}: image file not found"
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return "unreadable images", f"{path}: unreadable image ({e})"
    if size != (width, height):
        return "wrong image size", f"{path}: image is {size[1]} x {size[0]} (H x W), expected {height} x {width}"
    return None


def check_dataset(root: str | os.PathLike, height: int | None = None, width: int | None = None,
                  splits: Iterable[str] = ("train", "test"), decode: bool = True,
                  max_per_kind: int | None = 20, progress: bool = True) -> list[str]:
    """Every problem of the prepared dataset at ``root`` (empty list: the dataset is sound).

    ``height``/``width`` default to the layout's size (128 x 64 Market, 256 x 176 DeepFashion).
    With ``decode`` every image is fully decoded (finds truncated files); otherwise only its
    header is read. Each kind of problem lists at most ``max_per_kind`` messages followed by a
    count (None: list all).
    """
    root = Path(root)
    problems = _Problems(max_per_kind)
    if not root.is_dir():
        return [f"{root}: dataset folder not found"]
    for split in splits:
        try:
            layout = detect_layout(root, split)
        except DataError as e:
            problems.add(f"{split}: annotation file", str(e))
            continue
        files = LAYOUTS[layout]
        h, w = files["size"] if height is None or width is None else (height, width)
        normalise = deepfashion_flat_name if layout == "deepfashion" else (lambda n: n)

        annotations_path = root / files["annotations"].format(split=split)
        errors: list[str] = []
        annotations = parse_annotation_file(annotations_path, errors)
        problems.extend(f"malformed rows in {annotations_path}", errors)
        try:
            annotations = {normalise(k): v for k, v in annotations.items()}
        except DataError as e:
            problems.add(f"names in {annotations_path}", f"{annotations_path}: {e}")
            annotations = {}
        if not annotations and not errors:
            problems.add(f"{split}: empty", f"{annotations_path}: no annotation rows (empty split)")

        pairs_path = root / files["pairs"].format(split=split)
        if pairs_path.is_file():
            errors = []
            pairs = parse_pairs_file(pairs_path, errors)
            problems.extend(f"malformed rows in {pairs_path}", errors)
            try:
                pairs = [(normalise(a), normalise(b)) for a, b in pairs]
            except DataError as e:
                problems.add(f"names in {pairs_path}", f"{pairs_path}: {e}")
                pairs = []
            if not pairs and not errors:
                problems.add(f"{split}: empty", f"{pairs_path}: no pairs (empty split)")
        elif layout == "market" and split == "train":
            pairs = build_pairs(annotations)  # rebuilt on the fly by PairDataset; check them too
            if annotations and not pairs:
                problems.add(f"{split}: empty", f"{annotations_path}: no valid training pairs can "
                             "be rebuilt (no person with two images having both shoulders and hips)")
        else:
            problems.add(f"{split}: pairs file", f"{pairs_path}: pairs file not found")
            pairs = []

        pair_names = sorted({n for pair in pairs for n in pair})
        problems.extend(
            f"names in {pairs_path} without a row in {annotations_path}",
            (f"{pairs_path}: {n!r} has no row in {annotations_path}"
             for n in pair_names if n not in annotations))

        image_dir = root / split
        if not image_dir.is_dir():
            problems.add(f"{split}: image folder", f"{image_dir}: image folder not found")
            continue
        present = set(os.listdir(image_dir))
        names = sorted(set(annotations) | set(pair_names))
        missing = [n for n in names if n not in present]
        problems.extend(f"missing images in {image_dir}",
                        (f"{image_dir / n}: image file not found" for n in missing))
        if not present:
            problems.add(f"{split}: empty", f"{image_dir}: no images (empty split)")
        to_read = [n for n in names if n in present]
        for n in progress_bar(to_read, desc=f"check {split} images", unit="img", disable=not progress,
                      leave=False):
            problem = _check_image(image_dir / n, h, w, decode)
            if problem:
                problems.add(f"{problem[0]} in {image_dir}", problem[1])
    return problems.report()
