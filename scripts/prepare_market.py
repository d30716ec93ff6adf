"""Prepare Market-1501 for training: raw download -> the prepared layout (datasets/README.md).

    python scripts/prepare_market.py --raw DIR --out DIR [--annotations-dir DIR]

--raw holds bounding_box_train/ and bounding_box_test/; the annotation and pair CSVs are looked up in --annotations-dir, --raw and
--out. An already prepared folder is accepted as is and only verified (give the same folder to
--raw and --out, or omit --out). Exits with status 1 if the result has problems.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xinggan.data import DataError  # noqa: E402
from xinggan.data.prepare import prepare_market  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", required=True, type=Path, help="the unzipped download (or a prepared folder)")
    p.add_argument("--out", type=Path, default=None, help="prepared folder to write (default: --raw)")
    p.add_argument("--annotations-dir", type=Path, default=None,
                   help="folder holding the annotation/pair CSVs if not in --raw")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        problems = prepare_market(args.raw, args.out, args.annotations_dir)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    out = args.out or args.raw
    if problems:
        print(f"{out}: {len(problems)} problem lines", file=sys.stderr)
        return 1
    print(f"{out}: ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
