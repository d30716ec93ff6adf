"""Prepare Market-1501 for training: raw download -> the prepared layout (datasets/README.md).

    python scripts/prepare_market.py --raw DIR --out DIR [--annotations-dir DIR]

--raw holds bounding_box_train/ and bounding_box_test/. The annotation and pair CSVs
are looked up in --annotations-dir, --raw and --out. A prepared folder is only verified (omit
--out or give the same folder). Exits with status 1 if the result has problems.
"""
from __future__ import annotations

import sys

from xinggan.prep.prepare import prepare_cli, prepare_market


def main(argv=None) -> int:
    return prepare_cli(prepare_market, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
