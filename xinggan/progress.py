"""Progress on long work: a tqdm bar in a terminal, plain lines in a log file.

A redrawn bar fills a log file (a Slurm job's output) with copies; elsewhere than a terminal
:func:`progress` gives a :class:`PlainProgress`, one line at most every ``interval_s`` seconds::

    train: 250/1000 it (25%), 3.1 it/s, 4m02s left, l1=0.214 gan=0.693
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Optional, TextIO

from tqdm import tqdm

__all__ = ["PlainProgress", "progress"]

LOG_INTERVAL_S = 30.0


def progress(iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: str = "", unit: str = "it",
             initial: int = 0, disable: bool = False, leave: bool = True, stream: Optional[TextIO] = None,
             interval_s: float = LOG_INTERVAL_S):
    """A tqdm bar on a terminal, a :class:`PlainProgress` elsewhere (same calls)."""
    stream = sys.stderr if stream is None else stream
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return tqdm(iterable, total=total, desc=desc or None, unit=unit, initial=initial,
                    disable=disable, leave=leave, dynamic_ncols=True, file=stream)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                         disable=disable, stream=stream, interval_s=interval_s)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class PlainProgress:
    """Progress as plain lines, one at most every ``interval_s`` seconds and one at the end."""

    def __init__(self, iterable: Optional[Iterable] = None, *, total: Optional[int] = None,
                 desc: str = "", unit: str = "it", initial: int = 0, disable: bool = False,
                 stream: Optional[TextIO] = None, interval_s: float = LOG_INTERVAL_S,
                 clock=time.monotonic) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self._start = initial
        self.disable, self.interval_s, self._clock = disable, interval_s, clock
        self.stream = sys.stderr if stream is None else stream
        self._t0 = self._last = clock()
        self._postfix, self._closed = "", False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def set_postfix(self, **values: Any) -> None:
        self._postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if now - self._last >= self.interval_s:
            self._write(now)

    def line(self, now: Optional[float] = None) -> str:
        now = self._clock() if now is None else now
        elapsed = max(now - self._t0, 1e-9)
        rate = (self.n - self._start) / elapsed
        parts = [f"{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)" if self.total
                 else f"{self.n} {self.unit}", f"{rate:.3g} {self.unit}/s"]
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"{_duration((self.total - self.n) / rate)} left")
        elif self.n >= (self.total or 0):
            parts.append(f"{_duration(elapsed)} in all")
        text = ", ".join(parts + [self._postfix] * bool(self._postfix))
        return f"{self.desc}: {text}" if self.desc else text

    def _write(self, now: float) -> None:
        self._last = now
        if not self.disable:
            print(self.line(now), file=self.stream, flush=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n > self._start:
                self._write(self._clock())
