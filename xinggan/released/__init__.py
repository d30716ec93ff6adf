"""The released XingGAN code's networks, kept as references, not as models.

- :mod:`xinggan.released.network`: the released forward passes written out literally in
  functional ops on the released key names, with the N x N attention maps the released code
  forms: the numerical and speed reference for :mod:`xinggan.models`;
- :mod:`xinggan.released.convert`: the explicit key mapping between the authors' checkpoints
  (Ha0Tang/XingGAN, commit 10d6146) and our modules, both ways;
- ``keys/``: every key, shape and dtype of the released Market-1501 and DeepFashion checkpoints
  (generator and both discriminators), as listed from the released networks, so that the
  conversion and equivalence tests run in any clone; :func:`key_listing` reads them.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

__all__ = ["KEYS_DIR", "key_listing"]

KEYS_DIR = Path(__file__).resolve().parent / "keys"
_FILES = {"market": "market", "deepfashion": "fashion"}
_NETS = ("G", "D_PB", "D_PP")


@lru_cache(maxsize=None)
def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def key_listing(dataset: str, net: str) -> dict:
    """``{key: {"shape": [...], "dtype": ...}}`` of released network ``net`` (``G``, ``D_PB``
    shape discriminator, ``D_PP`` appearance discriminator) for ``dataset`` (``market`` or
    ``deepfashion``), with the file's ``meta`` block under the key ``meta`` of the result."""
    if dataset not in _FILES:
        raise ValueError(f"dataset must be one of {sorted(_FILES)}, got {dataset!r}")
    if net not in _NETS:
        raise ValueError(f"net must be one of {_NETS}, got {net!r}")
    path = KEYS_DIR / f"released_{net[0]}_{_FILES[dataset]}_keys.json"
    return _read(path)[net]
