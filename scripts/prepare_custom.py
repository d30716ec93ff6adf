"""Make a training dataset from your own pictures: one subfolder of photos per person.

    python scripts/prepare_custom.py --images DIR --out datasets/NAME [--preset deepfashion|market]
                                     [--detector mediapipe|openpose] [--weights FILE]
                                     [--test-fraction 0.2] [--min-joints 8] [--seed 0]

Photos that cannot be read or show fewer than --min-joints joints are left out (listed in
<out>/left-out.txt); the others are cropped around the person to the preset's frame
(deepfashion: 256 x 176, white fill; market: 128 x 64, border fill) and split by identity into
train/ and test/ (pairs: two photos of one identity). <out>/config.yaml is a config overlay:

    python train.py --config configs/deepfashion.yaml --config datasets/NAME/config.yaml

The result is checked as scripts/check_dataset.py does; the exit status is 1 if it has problems,
2 if the input cannot make a dataset.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xinggan.data.annotations import DataError
from xinggan.keypoints import DetectorUnavailable, build_detector
from xinggan.prep.check import print_problems
from xinggan.prep.custom import prepare_custom
from xinggan.prep.framing import FRAME_PRESETS, MIN_JOINTS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, type=Path, help="folder with one subfolder per identity")
    p.add_argument("--out", required=True, type=Path, help="prepared dataset folder to write")
    p.add_argument("--preset", choices=sorted(FRAME_PRESETS), default="deepfashion",
                   help="frame size and fill of the images (default deepfashion)")
    p.add_argument("--detector", default="mediapipe", help="keypoint detector (mediapipe, openpose)")
    p.add_argument("--weights", default=None, help="weights file of the detector, where it needs one")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of the identities that form the test split (at least one)")
    p.add_argument("--min-joints", type=int, default=MIN_JOINTS,
                   help=f"photos with fewer joints are left out (default {MIN_JOINTS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the identity split")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None, detector=None) -> int:
    """Run the command; ``detector`` (an object with ``name`` and ``detect``) replaces --detector."""
    args = parse_args(argv)
    try:
        if detector is None:
            detector = build_detector(args.detector, weights=args.weights)
        report = prepare_custom(args.images, args.out, detector, preset=args.preset,
                                test_fraction=args.test_fraction, min_joints=args.min_joints,
                                seed=args.seed, progress=not args.no_progress)
    except (DataError, DetectorUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in report.left_out:
        print(f"left out: {line}")
    for split in ("train", "test"):
        print(f"{split}: {report.images[split]} images of {report.identities[split]} identities, "
              f"{report.pairs[split]} pairs")
    if print_problems(report.problems, args.out):
        return 1
    print(f"{args.out}: ready ({len(report.left_out)} photos or folders left out); config overlay "
          f"{report.overlay}")
    print(f"train with: python train.py --config configs/{args.preset}.yaml --config {report.overlay}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
