"""Stopping on SIGINT / SIGTERM without losing work.

A scheduler (Slurm, torchrun, ``kill``) may signal the main process or its whole process group.
While a :class:`StopGuard` is entered, the first SIGINT or SIGTERM only raises a flag: the loop
finishes its iteration, every rank agrees to stop at the same iteration (:meth:`requested` is a
collective), the checkpoint is saved and the loop returns normally.  A signal that comes during
the save is ignored; a second Ctrl-C outside the save stops at once.  The DataLoader workers
ignore both signals (see :func:`xinggan.training.state.init_loader_worker`).  On exit the
previous handlers come back.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator, Optional

import torch
import torch.distributed as dist

__all__ = ["StopGuard"]


class StopGuard:
    """Turns SIGINT / SIGTERM into a stop at the end of the iteration, on every rank."""

    def __init__(self, device: torch.device, world_size: int = 1, verbose: bool = True) -> None:
        self.device, self.world_size, self.verbose = device, world_size, verbose
        self.signal: Optional[int] = None
        self._saving = False
        self._previous: dict = {}

    def __enter__(self) -> "StopGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):  # before the loader workers start
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if self._saving or (self.signal is not None and signum != signal.SIGINT):
            return  # already stopping: the save in progress (or about to start) goes on
        if self.signal is not None:  # a second Ctrl-C outside the save: stop now
            raise KeyboardInterrupt
        self.signal = signum
        if self.verbose:
            print(f"\nsignal {signum}: finishing the iteration, saving, exiting", file=sys.stderr)

    def requested(self) -> bool:
        """Whether any rank was signalled (a collective: every rank calls it each iteration)."""
        flag = self.signal is not None
        if self.world_size > 1 and dist.is_initialized():
            on = self.device if dist.get_backend() == "nccl" else "cpu"
            t = torch.tensor([1.0 if flag else 0.0], device=on)
            dist.all_reduce(t)
            flag = bool(t.item() > 0)
        return flag

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """Signals that arrive inside this block are ignored."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False
