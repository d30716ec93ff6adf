"""Detect the 18 OpenPose COCO-18 keypoints of every image in a folder and write an annotation CSV.

    python scripts/detect_keypoints.py --images DIR --detector mediapipe|openpose [--weights FILE]
                                       --out CSV [--keep-going]

The CSV has the datasets' annotation format: pixels of the stored image (EXIF orientation not
applied, as the dataset loader does not apply it), -1 for a missing joint, all -1 where nobody
was found. An unreadable file is named and skipped, and the exit status is then 1 unless
--keep-going. A summary follows: images, people found, joints per image. ``mediapipe`` (the
optional extra) finds nobody on 128 x 64 crops; ``openpose`` needs a local weights file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from xinggan.data.annotations import NUM_JOINTS, DataError, write_annotations
from xinggan.keypoints import DetectorUnavailable, build_detector
from xinggan.prep.framing import present_joints, read_photo
from xinggan.progress import progress as progress_bar


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, type=Path, help="folder of images")
    p.add_argument("--detector", required=True, help="mediapipe or openpose")
    p.add_argument("--weights", default=None, help="weights file of the detector, where it needs one")
    p.add_argument("--out", required=True, type=Path, help="annotation CSV to write")
    p.add_argument("--keep-going", action="store_true",
                   help="exit with status 0 even if some files could not be read")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def summary(keypoints: dict[str, np.ndarray], unreadable: list[str]) -> list[str]:
    """Lines of the summary: images, people found, joints per image."""
    counts = np.array([int(present_joints(kp).sum()) for kp in keypoints.values()], dtype=np.int64)
    found = int((counts > 0).sum())
    lines = [f"images: {len(keypoints)} read, {len(unreadable)} unreadable",
             f"people found: {found} of {len(keypoints)}"]
    if found:
        with_person = counts[counts > 0]
        lines.append(f"joints per image with a person: mean {with_person.mean():.1f}, "
                     f"min {with_person.min()}, max {with_person.max()} (of {NUM_JOINTS})")
        histogram = np.bincount(counts, minlength=NUM_JOINTS + 1)
        lines.append("images by joints found: " + ", ".join(
            f"{n}: {histogram[n]}" for n in range(NUM_JOINTS, -1, -1) if histogram[n]))
    return lines


def main(argv=None, detector=None) -> int:
    """Run the command; ``detector`` (an object with ``name`` and ``detect``) replaces --detector."""
    args = parse_args(argv)
    try:
        if not args.images.is_dir():
            raise DataError(f"{args.images}: folder not found")
        files = sorted(p for p in args.images.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"{args.images}: no files")
        detector = build_detector(args.detector, weights=args.weights) if detector is None else detector
    except (DataError, DetectorUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keypoints: dict[str, np.ndarray] = {}
    unreadable: list[str] = []
    for path in progress_bar(files, desc=f"{detector.name} keypoints", unit="img", disable=args.no_progress):
        try:
            image = read_photo(path, upright=False)
        except DataError as exc:
            print(f"skipped {exc}", file=sys.stderr)
            unreadable.append(str(path))
            continue
        keypoints[path.name] = detector.detect(image)
    if keypoints:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_annotations(args.out, keypoints)
        print(f"wrote {args.out} ({len(keypoints)} rows, detector {detector.name})")
    for line in summary(keypoints, unreadable):
        print(line)
    if unreadable:
        print(f"{len(unreadable)} unreadable files skipped: {', '.join(unreadable)}", file=sys.stderr)
        return 0 if args.keep_going else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
