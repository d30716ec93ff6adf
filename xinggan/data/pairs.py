"""The ``<from stem>___<to stem>`` name of a generated result, shared by generation and evaluation
(three underscores, as in the released PATN / XingGAN strips).
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["PAIR_SEPARATOR", "result_stem"]

PAIR_SEPARATOR = "___"


def result_stem(source_name: str, target_name: str) -> str:
    """Stem of the generated image of pair (source, target): ``<source stem>___<target stem>``."""
    return f"{Path(source_name).stem}{PAIR_SEPARATOR}{Path(target_name).stem}"
