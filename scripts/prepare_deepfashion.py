"""Prepare DeepFashion In-shop for training: raw download -> the prepared layout (datasets/README.md).

    python scripts/prepare_deepfashion.py --raw DIR --out DIR [--annotations-dir DIR]

--raw holds img/ (or img_highres/), train.lst and test.lst. The annotation and pair CSVs
are looked up in --annotations-dir, --raw and --out. A prepared folder is only verified (omit
--out or give the same folder). Exits with status 1 if the result has problems.
"""
from __future__ import annotations

import sys

from xinggan.prep.prepare import prepare_cli, prepare_deepfashion


def main(argv=None) -> int:
    return prepare_cli(prepare_deepfashion, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
