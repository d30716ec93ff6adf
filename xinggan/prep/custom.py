"""A training dataset from one's own photos: one subfolder per identity -> the prepared layout.

Each photo gets its keypoints from a detector (:mod:`xinggan.keypoints`) and is fitted into the
preset's frame (:mod:`xinggan.prep.framing`); unreadable photos and poses with fewer than
``min_joints`` joints are left out and listed in ``left-out.txt``. Identities are split between
train and test (no person in both); pairs are every ordered pair of two photos of one identity.
``config.yaml`` is a config overlay that points ``data`` at the folder.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import yaml
from PIL import Image

from ..data.annotations import DataError, write_annotations, write_pairs
from ..data.dataset import LAYOUTS
from ..progress import progress as progress_bar
from .check import check_dataset
from .framing import DEFAULT_MARGIN, FRAME_PRESETS, MIN_JOINTS, check_joints, fit_to_frame, read_photo

__all__ = ["CustomDataset", "prepare_custom"]

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9-]+")


@dataclass
class CustomDataset:
    """What :func:`prepare_custom` wrote: counts per split, photos left out, problems found."""

    images: dict[str, int] = field(default_factory=dict)
    identities: dict[str, int] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)  # "path: reason"
    problems: list[str] = field(default_factory=list)
    overlay: Optional[Path] = None


def _unique_tag(text: str, fallback: str, taken: set[str]) -> str:
    """A file-name-safe piece without ``_`` (the person id is the name before the first ``_``), not in ``taken``."""
    tag = _NOT_ALLOWED.sub("-", text).strip("-") or fallback
    name, k = tag, 2
    while name in taken:
        name, k = f"{tag}-{k}", k + 1
    taken.add(name)
    return name


def _identity_folders(images: Path, out: Path, report: CustomDataset) -> list[Path]:
    """The identity subfolders of ``images``; loose files are noted as left out."""
    if out.is_dir() and any(out.iterdir()):  # stale images of an earlier run would mix in
        raise DataError(f"{out}: the output folder is not empty; give a new or empty folder")
    if not images.is_dir():
        raise DataError(f"{images}: folder not found")
    visible = sorted(p for p in images.iterdir() if not p.name.startswith("."))
    folders = [p for p in visible if p.is_dir()]
    if not folders:
        raise DataError(f"{images}: no subfolders: put the photos of each person (identity) in a "
                        "subfolder of their own")
    report.left_out += [f"{p}: not in an identity subfolder" for p in visible if p.is_file()]
    return folders


def _frame_photos(folders: list[Path], detector, frame: tuple, min_joints: int, report: CustomDataset,
                  progress: bool) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """Identity tag -> [(file name, framed image, keypoints)] of its usable photos."""
    height, width, fill, margin = frame
    taken: set[str] = set()
    tags = [_unique_tag(folder.name, "person", taken) for folder in folders]
    staged = {tag: [] for tag in tags}
    names_taken: dict[str, set[str]] = {tag: set() for tag in tags}
    jobs = [(tag, path) for folder, tag in zip(folders, tags)
            for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))]
    for tag, path in progress_bar(jobs, desc=f"{detector.name} keypoints", unit="img", disable=not progress):
        try:
            photo = read_photo(path)
            keypoints = detector.detect(photo)
            check_joints(keypoints, str(path), min_joints, detector.name)
        except DataError as exc:
            report.left_out.append(str(exc))
            continue
        framed = fit_to_frame(photo, keypoints, height, width, fill, margin)
        stem = _unique_tag(path.stem, "photo", names_taken[tag])
        staged[tag].append((f"{tag}_{stem}.jpg", framed.image, framed.keypoints))
    for folder, tag in zip(folders, tags):
        if len(staged[tag]) < 2:
            report.left_out.append(f"{folder}: {len(staged[tag])} usable photos of this identity, which make no pair")
    return staged


def _write_split(out: Path, split: str, items: list, layout: dict, quality: int) -> tuple[int, int]:
    """Write one split's images, annotations and pairs (every ordered pair within an identity)."""
    (out / split).mkdir(exist_ok=True)
    annotations: dict[str, np.ndarray] = {}
    pairs: list[tuple[str, str]] = []
    for photos in items:
        for name, image, keypoints in photos:
            Image.fromarray(image).save(out / split / name, format="JPEG", quality=quality)
            annotations[name] = keypoints
        pairs += [(a[0], b[0]) for a in photos for b in photos if a[0] != b[0]]
    write_annotations(out / layout["annotations"].format(split=split), annotations)
    write_pairs(out / layout["pairs"].format(split=split), pairs)
    return len(annotations), len(pairs)


def _write_overlay(out: Path, preset: str, height: int, width: int) -> Path:
    """``config.yaml``: the config overlay that points ``data`` at ``out``."""
    layout = LAYOUTS[preset]
    overlay = {"data": {
        "dataset": preset, "root": str(out.resolve()), "height": height, "width": width,
        **{f"{split}_{kind}": layout[kind].format(split=split)
           for split in ("train", "test") for kind in ("annotations", "pairs")},
    }}
    path = out / "config.yaml"
    path.write_text(f"# Config overlay for the dataset prepared in {out.resolve()} ({preset} frame, "
                    f"{height} x {width}).\n# Use: python train.py --config configs/{preset}.yaml --config "
                    f"{path}\n" + yaml.safe_dump(overlay, sort_keys=False), encoding="utf-8")
    return path


def prepare_custom(images: str | os.PathLike, out: str | os.PathLike, detector, preset: str = "deepfashion",
                   test_fraction: float = 0.2, min_joints: int = MIN_JOINTS, seed: int = 0,
                   margin: float = DEFAULT_MARGIN, fill: Optional[str] = None, quality: int = 95,
                   progress: bool = True) -> CustomDataset:
    """Prepare the photos under ``images`` (one subfolder per identity) into ``out``.

    ``detector`` has ``name`` and ``detect(rgb) -> (18, 2)``. DataError when the input makes no
    dataset (no identity folders, or fewer than two identities with two usable photos each).
    """
    if preset not in FRAME_PRESETS:
        raise ValueError(f"preset must be one of {sorted(FRAME_PRESETS)}, got {preset!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    images, out = Path(images), Path(out)
    report = CustomDataset()
    folders = _identity_folders(images, out, report)
    height, width = FRAME_PRESETS[preset]["size"]
    frame = (height, width, fill or FRAME_PRESETS[preset]["fill"], margin)
    staged = _frame_photos(folders, detector, frame, min_joints, report, progress)
    usable = [tag for tag, items in staged.items() if len(items) >= 2]
    if len(usable) < 2:
        raise DataError(f"{images}: {len(usable)} identities have two or more usable photos; at least "
                        "two are needed (one for training, one for testing)"
                        + (f"; left out: {'; '.join(report.left_out[:5])}" if report.left_out else ""))
    order = np.random.default_rng(seed).permutation(len(usable))
    n_test = min(len(usable) - 1, max(1, int(round(test_fraction * len(usable)))))
    test_ids = {usable[i] for i in order[:n_test]}
    out.mkdir(parents=True, exist_ok=True)
    for split, tags in (("train", [t for t in usable if t not in test_ids]),
                        ("test", [t for t in usable if t in test_ids])):
        report.images[split], report.pairs[split] = _write_split(
            out, split, [staged[t] for t in tags], LAYOUTS[preset], quality)
        report.identities[split] = len(tags)
    report.overlay = _write_overlay(out, preset, height, width)
    (out / "left-out.txt").write_text("".join(f"{line}\n" for line in report.left_out), encoding="utf-8")
    report.problems = check_dataset(out, height, width, ("train", "test"), progress=progress)
    return report
