"""Draw the toy dataset: cartoon people from 18 COCO keypoints, in the Market-1501 layout.

    python scripts/make_toy_dataset.py --out datasets/toy [--seed 0] [--identities 40] [--poses 8]

Writes ``train/``, ``test/`` and the Market annotation and pair CSVs; identical files for the
same arguments (the defaults: about 2 MB in a few seconds).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from xinggan.prep.toy import make_toy_dataset


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--identities", type=int, default=40, help="training identities")
    p.add_argument("--test-identities", type=int, default=10, help="test identities")
    p.add_argument("--poses", type=int, default=8, help="images per identity")
    p.add_argument("--test-pairs", type=int, default=200, help="at most this many test pairs")
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=64)
    args = p.parse_args(argv)
    start = time.perf_counter()
    counts = make_toy_dataset(args.out, seed=args.seed, identities=args.identities,
                              test_identities=args.test_identities, poses=args.poses,
                              test_pairs=args.test_pairs, height=args.height, width=args.width,
                              progress=True)
    for split, c in counts.items():
        print(f"{split}: {c['images']} images, {c['pairs']} pairs")
    print(f"toy dataset written to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
