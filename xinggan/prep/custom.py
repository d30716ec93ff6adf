"""A training dataset from one's own pictures: one folder per person -> the prepared layout.

Input: a folder with one subfolder per identity (a person, or an outfit as in DeepFashion), each
holding that identity's photos, of any size and format. For every photo the keypoints come from
a detector (:mod:`xinggan.keypoints`); a photo that cannot be read or whose pose has fewer than
``min_joints`` joints is reported and left out. The others are fitted into the frame of the
chosen preset (:mod:`xinggan.prep.framing`: 128 x 64 with border fill like Market-1501, or
256 x 176 with white fill like DeepFashion) and written with their keypoints in that frame.

Output: the prepared layout of the preset (``train/``, ``test/``, its annotation and pair CSV
names; :data:`xinggan.data.dataset.LAYOUTS`), split by identity as PATN split both datasets
(no person in both splits); pairs are every ordered pair of two different photos of one
identity. ``config.yaml`` beside them is a config overlay that points ``data`` at the folder,
so that ``train.py --config configs/deepfashion.yaml --config <out>/config.yaml`` trains on it;
``left-out.txt`` lists the photos left out and why. The result is verified with
:func:`~xinggan.prep.check.check_dataset`.
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
from xinggan.progress import progress as progress_bar

from ..data.annotations import DataError, write_annotations, write_pairs
from ..data.dataset import LAYOUTS
from .check import check_dataset
from .framing import DEFAULT_MARGIN, FRAME_PRESETS, MIN_JOINTS, check_joints, fit_to_frame, read_photo

__all__ = ["CustomDataset", "prepare_custom"]

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9-]+")


@dataclass
class CustomDataset:
    """What :func:`prepare_custom` wrote: counts per split, photos left out, problems found."""

    out: Path
    preset: str
    images: dict[str, int] = field(default_factory=dict)
    identities: dict[str, int] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)  # "path: reason"
    problems: list[str] = field(default_factory=list)
    overlay: Optional[Path] = None


def _tag(text: str, fallback: str) -> str:
    """A file-name-safe piece without ``_`` (the person id is the name before the first ``_``)."""
    tag = _NOT_ALLOWED.sub("-", text).strip("-")
    return tag or fallback


def _unique(tag: str, taken: set[str]) -> str:
    name, k = tag, 2
    while name in taken:
        name, k = f"{tag}-{k}", k + 1
    taken.add(name)
    return name


def prepare_custom(images: str | os.PathLike, out: str | os.PathLike, detector,
                   preset: str = "deepfashion", test_fraction: float = 0.2,
                   min_joints: int = MIN_JOINTS, seed: int = 0, margin: float = DEFAULT_MARGIN,
                   fill: Optional[str] = None, quality: int = 95,
                   progress: bool = True) -> CustomDataset:
    """Prepare the photos under ``images`` (one subfolder per identity) into ``out``.

    ``detector`` has ``name`` and ``detect(rgb) -> (18, 2)``. Raises DataError when the input
    cannot make a dataset (no identity folders, or fewer than two identities with two usable
    photos each: one for training and one for testing).
    """
    if preset not in FRAME_PRESETS:
        raise ValueError(f"preset must be one of {sorted(FRAME_PRESETS)}, got {preset!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    images, out = Path(images), Path(out)
    if out.is_dir() and any(out.iterdir()):  # stale images of an earlier run would mix in
        raise DataError(f"{out}: the output folder is not empty; give a new or empty folder")
    if not images.is_dir():
        raise DataError(f"{images}: folder not found")
    folders = sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{images}: no subfolders: put the photos of each person (identity) in a "
                        "subfolder of their own")
    height, width = FRAME_PRESETS[preset]["size"]
    fill = fill or FRAME_PRESETS[preset]["fill"]
    layout = LAYOUTS[preset]
    report = CustomDataset(out=out, preset=preset)
    loose = [p.name for p in images.iterdir() if p.is_file() and not p.name.startswith(".")]
    if loose:
        report.left_out += [f"{images / n}: not in an identity subfolder" for n in sorted(loose)]

    # Detect and frame every photo; keep the framed images in memory until the split is known.
    staged: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    identity_tags: set[str] = set()
    jobs = [(folder, path) for folder in folders
            for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))]
    for folder in folders:
        staged.setdefault(_unique(_tag(folder.name, "person"), identity_tags), [])
    tag_of = dict(zip(folders, staged))
    names_taken: dict[str, set[str]] = {tag: set() for tag in staged}
    for folder, path in progress_bar(jobs, desc=f"{detector.name} keypoints", unit="img", disable=not progress):
        tag = tag_of[folder]
        try:
            photo = read_photo(path)
            keypoints = detector.detect(photo)
            check_joints(keypoints, str(path), min_joints, detector.name)
        except DataError as exc:
            report.left_out.append(str(exc))
            continue
        framed = fit_to_frame(photo, keypoints, height, width, fill, margin)
        stem = _unique(_tag(path.stem, "photo"), names_taken[tag])
        staged[tag].append((f"{tag}_{stem}.jpg", framed.image, framed.keypoints))

    usable = [tag for tag, items in staged.items() if len(items) >= 2]
    folder_of = {tag: folder for folder, tag in tag_of.items()}
    for tag, items in staged.items():
        if len(items) < 2:
            report.left_out.append(f"{folder_of[tag]}: {len(items)} usable photos of this identity, "
                                   "which make no pair")
    if len(usable) < 2:
        raise DataError(f"{images}: {len(usable)} identities have two or more usable photos; at least "
                        "two are needed (one for training, one for testing)"
                        + (f"; left out: {'; '.join(report.left_out[:5])}" if report.left_out else ""))
    order = np.random.default_rng(seed).permutation(len(usable))
    n_test = min(len(usable) - 1, max(1, int(round(test_fraction * len(usable)))))
    test_ids = {usable[i] for i in order[:n_test]}
    splits = {"train": [t for t in usable if t not in test_ids], "test": [t for t in usable if t in test_ids]}

    out.mkdir(parents=True, exist_ok=True)
    for split, tags in splits.items():
        (out / split).mkdir(exist_ok=True)
        annotations: dict[str, np.ndarray] = {}
        pairs: list[tuple[str, str]] = []
        for tag in tags:
            names = []
            for name, image, keypoints in staged[tag]:
                Image.fromarray(image).save(out / split / name, format="JPEG", quality=quality)
                annotations[name] = keypoints
                names.append(name)
            pairs += [(a, b) for a in names for b in names if a != b]
        write_annotations(out / layout["annotations"].format(split=split), annotations)
        write_pairs(out / layout["pairs"].format(split=split), pairs)
        report.images[split], report.identities[split], report.pairs[split] = \
            len(annotations), len(tags), len(pairs)

    overlay = {"data": {
        "dataset": preset, "root": str(out.resolve()), "height": height, "width": width,
        **{f"{split}_{kind}": layout[kind].format(split=split)
           for split in ("train", "test") for kind in ("annotations", "pairs")},
    }}
    report.overlay = out / "config.yaml"
    report.overlay.write_text(
        f"# Config overlay for the dataset prepared in {out.resolve()} ({preset} frame, "
        f"{height} x {width}).\n# Use: python train.py --config configs/{preset}.yaml --config "
        f"{report.overlay}\n" + yaml.safe_dump(overlay, sort_keys=False), encoding="utf-8")
    (out / "left-out.txt").write_text("".join(f"{line}\n" for line in report.left_out), encoding="utf-8")
    report.problems = check_dataset(out, height, width, ("train", "test"), progress=progress)
    return report
