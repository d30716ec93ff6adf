"""The released XingGAN networks as references: :mod:`.network` (their forward passes, literally),
:mod:`.convert` (the key mapping of the authors' checkpoints) and ``keys/`` (every key, shape and
dtype of the released checkpoints, read by :func:`key_listing`)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

KEYS_DIR = Path(__file__).resolve().parent / "keys"
_FILES = {"market": "market", "deepfashion": "fashion"}
_NETS = ("G", "D_PB", "D_PP")


@lru_cache(maxsize=None)
def key_listing(dataset: str, net: str) -> dict:
    """``{key: {"shape": [...], "dtype": ...}}`` of released network ``net`` (``G``, ``D_PB``
    shape discriminator, ``D_PP`` appearance discriminator) for ``dataset`` (``market`` or
    ``deepfashion``), with the file's ``meta`` block under the key ``meta`` of the result."""
    if dataset not in _FILES:
        raise ValueError(f"dataset must be one of {sorted(_FILES)}, got {dataset!r}")
    if net not in _NETS:
        raise ValueError(f"net must be one of {_NETS}, got {net!r}")
    return json.loads((KEYS_DIR / f"released_{net[0]}_{_FILES[dataset]}_keys.json").read_text())[net]
