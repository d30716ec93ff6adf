"""Whole-dataset verification: every problem of a prepared dataset folder, reported at once.

Per split: malformed annotation and pair rows, pair names without annotations, missing,
unreadable, truncated or wrongly sized images, empty splits. A missing Market training pairs
file is no problem: :class:`~xinggan.data.PairDataset` rebuilds it.
"""
from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from PIL import Image

from ..data.annotations import DataError, build_pairs, deepfashion_flat_name, parse_annotation_file, parse_pairs_file
from ..data.dataset import LAYOUTS, detect_layout
from ..progress import progress as progress_bar

__all__ = ["check_dataset", "print_problems"]


class _Problems:
    """Problems grouped by kind, each kind capped at ``max_per_kind`` listed messages."""

    def __init__(self, max_per_kind: int | None):
        self.max_per_kind = max_per_kind
        self.kinds: dict[str, list[str]] = defaultdict(list)

    def add(self, kind: str, *messages: str) -> None:
        self.kinds[kind].extend(messages)

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


def _parse(path: Path, parse, normalise, problems: _Problems):
    """(rows of ``path`` with normalised names, whether any row was malformed)."""
    errors: list[str] = []
    rows = parse(path, errors)
    problems.add(f"malformed rows in {path}", *errors)
    try:
        return normalise(rows), bool(errors)
    except DataError as e:
        problems.add(f"names in {path}", f"{path}: {e}")
        return type(rows)(), bool(errors)


def _split_pairs(root: Path, split: str, layout: str, normalise, annotations: dict, problems: _Problems) -> list:
    """The pairs of ``split`` (a missing Market training file: rebuilt as PairDataset does)."""
    files = LAYOUTS[layout]
    pairs_path = root / files["pairs"].format(split=split)
    if pairs_path.is_file():
        pairs, malformed = _parse(pairs_path, parse_pairs_file,
                                  lambda rows: [(normalise(a), normalise(b)) for a, b in rows], problems)
        if not pairs and not malformed:
            problems.add(f"{split}: empty", f"{pairs_path}: no pairs (empty split)")
    elif layout == "market" and split == "train":
        pairs = build_pairs(annotations)
        if annotations and not pairs:
            problems.add(f"{split}: empty", f"{root / files['annotations'].format(split=split)}: no valid "
                         "training pairs can be rebuilt (no person with two images having both shoulders and hips)")
    else:
        problems.add(f"{split}: pairs file", f"{pairs_path}: pairs file not found")
        pairs = []
    return pairs


def _check_split(root: Path, split: str, size, decode: bool, problems: _Problems, progress: bool) -> None:
    try:
        layout = detect_layout(root, split)
    except DataError as e:
        problems.add(f"{split}: annotation file", str(e))
        return
    files = LAYOUTS[layout]
    h, w = files["size"] if size is None else size
    normalise = deepfashion_flat_name if layout == "deepfashion" else (lambda n: n)
    annotations_path = root / files["annotations"].format(split=split)
    pairs_path = root / files["pairs"].format(split=split)
    annotations, malformed = _parse(annotations_path, parse_annotation_file,
                                    lambda rows: {normalise(k): v for k, v in rows.items()}, problems)
    if not annotations and not malformed:
        problems.add(f"{split}: empty", f"{annotations_path}: no annotation rows (empty split)")
    pair_names = sorted({n for pair in _split_pairs(root, split, layout, normalise, annotations, problems)
                         for n in pair})
    problems.add(f"names in {pairs_path} without a row in {annotations_path}",
                 *(f"{pairs_path}: {n!r} has no row in {annotations_path}" for n in pair_names if n not in annotations))
    image_dir = root / split
    if not image_dir.is_dir():
        problems.add(f"{split}: image folder", f"{image_dir}: image folder not found")
        return
    present = set(os.listdir(image_dir))
    names = sorted(set(annotations) | set(pair_names))
    problems.add(f"missing images in {image_dir}",
                 *(f"{image_dir / n}: image file not found" for n in names if n not in present))
    if not present:
        problems.add(f"{split}: empty", f"{image_dir}: no images (empty split)")
    to_read = [n for n in names if n in present]
    for n in progress_bar(to_read, desc=f"check {split} images", unit="img", disable=not progress, leave=False):
        problem = _check_image(image_dir / n, h, w, decode)
        if problem:
            problems.add(f"{problem[0]} in {image_dir}", problem[1])


def check_dataset(root: str | os.PathLike, height: int | None = None, width: int | None = None,
                  splits: Iterable[str] = ("train", "test"), decode: bool = True,
                  max_per_kind: int | None = 20, progress: bool = True) -> list[str]:
    """Every problem of the prepared dataset at ``root`` (empty list: the dataset is sound).

    ``height``/``width`` default to the layout's size; ``decode`` decodes every image (finds
    truncated files); each kind of problem lists at most ``max_per_kind`` messages (None: all).
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: dataset folder not found"]
    problems = _Problems(max_per_kind)
    size = None if height is None or width is None else (height, width)
    for split in splits:
        _check_split(root, split, size, decode, problems, progress)
    return problems.report()


def print_problems(problems: list[str], where) -> bool:
    """Print ``problems`` on stdout and their count on stderr; whether there were any."""
    for problem in problems:
        print(problem)
    if problems:
        print(f"{where}: {len(problems)} problem lines", file=sys.stderr)
    return bool(problems)
