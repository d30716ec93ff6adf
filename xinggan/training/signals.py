"""Stopping on a signal without losing work, every rank at the same iteration.

Schedulers stop jobs with SIGTERM (Slurm, torchrun, ``kill``), warn of a time limit or a
preemption with SIGUSR1 or SIGUSR2 (``sbatch --signal``), and a user presses Ctrl-C.  While a
:class:`StopGuard` is entered, the first of these only raises a flag: the loop finishes its
iteration, saves and returns.  A second Ctrl-C stops at once.  DataLoader workers ignore them
(:func:`xinggan.training.state.init_loader_worker`).

:class:`Agreement` shares host flags (stop, a time-based save) between ranks without making the
host wait for the device: each iteration starts an all-reduce of this iteration's flags and reads
the one started an iteration earlier, which has long finished.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Optional

import torch
import torch.distributed as dist

__all__ = ["Agreement", "StopGuard", "STOP_SIGNALS"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class StopGuard:
    """Turns SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 into a flag read at the end of an iteration."""

    def __init__(self, verbose: bool = True) -> None:
        self.verbose = verbose
        self.signal: Optional[int] = None
        self._previous: dict = {}

    def __enter__(self) -> "StopGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:  # before the loader workers start
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if self.signal is not None:
            if signum == signal.SIGINT and self.signal == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            return  # already stopping: the save goes on
        self.signal = signum
        if self.verbose:
            print(f"\nsignal {signal.Signals(signum).name}: finishing the iteration, saving, "
                  "exiting", file=sys.stderr, flush=True)


class Agreement:
    """The element-wise maximum over ranks of a few host flags, one iteration late.

    :meth:`exchange` starts the all-reduce of this call's flags and returns the result of the
    previous call's (zeros on the first call); one process returns its flags at once.  Every
    rank must call it the same number of times; :meth:`close` waits for the last reduction.
    """

    def __init__(self, device: torch.device, world_size: int, n: int = 2) -> None:
        self.world_size = world_size
        self.device = torch.device(device)
        self._work = None
        if world_size == 1:
            return
        cuda = self.device.type == "cuda"
        self._local = torch.zeros(n, pin_memory=cuda)          # flags written by the host
        self._local_np = self._local.numpy()
        self._buffer = torch.zeros(n, device=self.device)      # reduced in place
        self._result = torch.zeros(n, pin_memory=cuda) if cuda else self._buffer
        self._result_np = self._result.numpy()
        self._event = torch.cuda.Event() if cuda else None

    def exchange(self, *flags: float) -> tuple[bool, ...]:
        if self.world_size == 1:
            return tuple(bool(f) for f in flags)
        previous = self._collect()
        self._local_np[:] = flags
        self._buffer.copy_(self._local, non_blocking=True)
        self._work = dist.all_reduce(self._buffer, op=dist.ReduceOp.MAX, async_op=True)
        if self._event is not None:
            self._work.wait()  # the current stream waits for the reduction; the host does not
            self._result.copy_(self._buffer, non_blocking=True)
            self._event.record()
        return previous

    def _collect(self) -> tuple[bool, ...]:
        if self._work is None:
            return (False,) * len(self._local_np)
        self._work.wait()
        if self._event is not None:
            self._event.synchronize()
        self._work = None
        return tuple(bool(v > 0) for v in self._result_np)

    def close(self) -> None:
        if self.world_size > 1:
            self._collect()
