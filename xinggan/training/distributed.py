"""The processes of a multi-process run: how they start, see each other fail, and end.

- :func:`start` joins the process group from the launcher's environment (torchrun, srun, or any
  launcher that sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``), with a
  bounded collective timeout.
- :class:`Watch`: a rank that fails on its own (a data error, out of memory, any exception)
  writes its rank and cause to the rendezvous store; a thread in every other rank reads it
  within a second, prints one line naming that rank, and ends the process with status 1, so that
  no rank waits in a collective for a peer that is gone, with or without torchrun's agent.
- :func:`wrap` makes the DistributedDataParallel wrappers and :func:`finish` releases their
  reducers before the group is destroyed: a reducer freed after ``destroy_process_group`` (at
  interpreter exit, by the garbage collector's last pass) aborts the process.
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
import weakref
from datetime import timedelta
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Watch", "finish", "start", "wrap"]

_WRAPPERS: "weakref.WeakSet[DistributedDataParallel]" = weakref.WeakSet()


def wrap(module: nn.Module, device: torch.device, **kwargs) -> DistributedDataParallel:
    """``module`` in DistributedDataParallel, registered so that :func:`finish` can release it."""
    ids = [device.index] if device.type == "cuda" else None
    ddp = DistributedDataParallel(module, device_ids=ids, **kwargs)
    _WRAPPERS.add(ddp)
    return ddp


def release_wrappers() -> None:
    """Drop every wrapper's reducer and logger (they hold the process group), whoever still
    holds the wrapper; the wrappers cannot train afterwards."""
    for ddp in list(_WRAPPERS):
        for name in ("logger", "reducer"):
            ddp.__dict__.pop(name, None)
    _WRAPPERS.clear()
    gc.collect()


def finish() -> None:
    """Release the wrappers, then destroy the process group (when there is one)."""
    release_wrappers()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class Watch:
    """Failure news between ranks through the rendezvous store (see the module docstring)."""

    def __init__(self, store, rank: int, world_size: int, poll_s: float = 0.5) -> None:
        self.store, self.rank, self.world_size = dist.PrefixStore("xinggan/failure", store), rank, world_size
        self.before_exit: Callable[[], None] = lambda: None  # e.g. let a save in flight finish
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(poll_s,), daemon=True,
                                        name="xinggan-rank-watch")
        self._thread.start()

    def _run(self, poll_s: float) -> None:
        while not self._done.wait(poll_s):
            try:
                if self.store.add("count", 0) == 0:
                    continue
                cause = self.store.get("1").decode()
                self.store.add("acks", 1)
            except Exception as error:  # noqa: BLE001 - the store's host (rank 0) is gone
                if self._done.is_set():
                    return
                cause = f"rank 0 is gone ({type(error).__name__}: {error})"
            if self._done.is_set():
                return
            print(f"error: stopping rank {self.rank}: {cause}", file=sys.stderr, flush=True)
            try:
                self.before_exit()
            finally:
                os._exit(1)

    def announce(self, cause: str, wait_s: float = 10.0) -> None:
        """Tell the other ranks that this one failed, and give them ``wait_s`` to read it (rank 0
        hosts the store: its exit would cut them off)."""
        self._done.set()
        try:
            n = self.store.add("count", 1)
            self.store.set(str(n), f"rank {self.rank} failed: {cause}")
            deadline = time.monotonic() + wait_s
            while self.store.add("acks", 0) < self.world_size - 1 and time.monotonic() < deadline:
                time.sleep(0.1)
        except Exception:  # noqa: BLE001 - the store is gone: nobody left to tell
            pass

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


def start(backend: str, timeout_s: float) -> Optional[Watch]:
    """Join the process group of ``WORLD_SIZE`` processes from the environment; None for one
    process.  Collectives time out after ``timeout_s``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return None
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: a launcher "
                           "(torchrun, srun) sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT")
    timeout = timedelta(seconds=timeout_s)
    store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
    # torchrun's agent keeps its store across restarts: each attempt has its own keys
    store = dist.PrefixStore(f"attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    dist.init_process_group(backend, store=dist.PrefixStore("pg", store), rank=rank,
                            world_size=world, timeout=timeout)
    return Watch(store, rank, world)
