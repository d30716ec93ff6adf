"""Check a prepared dataset folder and report every problem at once.

    python scripts/check_dataset.py --config configs/market.yaml [--set data.root=DIR]
    python scripts/check_dataset.py --root datasets/market [--height 128 --width 64] [--split train,test]

Finds missing, unreadable or truncated images, images of the wrong size, malformed annotation
or pair rows, pairs whose images have no annotation, and empty splits. Exits with status 1 if
there is any problem, 0 otherwise. The size defaults to the layout's (128 x 64 Market,
256 x 176 DeepFashion).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xinggan.config import ConfigError, load_config
from xinggan.prep.check import check_dataset, print_problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=[],
                   help="YAML config(s): take root and image size from its data section")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. data.root=DIR")
    p.add_argument("--root", type=Path, default=None, help="prepared dataset folder")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--split", default="train,test", help="comma-separated splits to check")
    p.add_argument("--no-decode", action="store_true",
                   help="read image headers only (faster; misses truncated files)")
    p.add_argument("--all", action="store_true", help="list every problem, not 20 of each kind")
    args = p.parse_args(argv)
    if args.config:
        try:
            cfg = load_config(args.config, args.set)
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            return 2
        args.root = args.root or Path(cfg.data.root)
        args.height = args.height or cfg.data.height
        args.width = args.width or cfg.data.width
    if args.root is None:
        p.error("give --config or --root")
    if (args.height is None) != (args.width is None):
        p.error("give both --height and --width, or neither")
    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    problems = check_dataset(args.root, args.height, args.width, splits, decode=not args.no_decode,
                             max_per_kind=None if args.all else 20)
    if print_problems(problems, args.root):
        return 1
    print(f"{args.root}: no problems in {', '.join(splits)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
