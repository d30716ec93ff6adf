"""The "did you mean" hint of error messages (standard library only, for the lightest modules)."""
from __future__ import annotations

import difflib
from typing import Iterable, Optional

__all__ = ["closest", "did_you_mean"]


def closest(value: object, choices: Iterable[object], cutoff: float = 0.4) -> Optional[str]:
    """The member of ``choices`` (as a string) most like ``value``; None below the ``cutoff`` ratio."""
    hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=cutoff)
    return hint[0] if hint else None


def did_you_mean(value: object, choices: Iterable[object], cutoff: float = 0.4) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``."""
    hint = closest(value, choices, cutoff)
    return f" (did you mean {hint!r}?)" if hint is not None else ""
