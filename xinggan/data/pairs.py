"""The name of a generated result: the one ``<from>___<to>`` rule shared by generation and evaluation.

The generated image of pair (source ``a``, target ``b``) is named ``<stem of a>___<stem of b>``
(:data:`PAIR_SEPARATOR` is three underscores, as in the released PATN / XingGAN strips
``<a>.jpg___<b>.jpg_vis.jpg``); :mod:`xinggan.inference` writes ``<result_stem(a, b)>.png`` and
:mod:`xinggan.metrics.layouts` reads the names back.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["PAIR_SEPARATOR", "result_stem"]

PAIR_SEPARATOR = "___"


def result_stem(source_name: str, target_name: str) -> str:
    """Stem of the generated image of pair (source, target): ``<source stem>___<target stem>``."""
    return f"{Path(source_name).stem}{PAIR_SEPARATOR}{Path(target_name).stem}"
