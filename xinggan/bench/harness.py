"""How things are measured: timing loops, CUDA peaks, and peak memory in a fresh process.

Nothing here knows what is measured (that is :mod:`xinggan.bench.workloads`):

- :func:`timed` and :func:`timed_interleaved` run callables after untimed warm-up runs and
  summarise the repeats as median, min and max (:func:`summarise`); on CUDA they synchronise
  the device before each reading of the clock, so that a run's time includes its kernels.
  :func:`timed_interleaved` runs several callables in turn (a, b, a, b, ...), so that a
  machine whose speed drifts (a shared or throttled host) affects them alike.
- :func:`cuda_peak_over`: CUDA's maximum allocated memory during one call, and its rise over
  the memory held before it.
- :func:`peak_rss_over`: on Linux, the peak resident set during one call and its rise, with the
  process's high-water mark reset first; :func:`measure_in_fresh_process` runs a module entry
  point (:mod:`xinggan.bench.memory`) in a new interpreter, so that nothing the measuring
  process did before inflates the peak, and :func:`release_freed_memory` hands freed heap pages
  back to the system so that the parent does not crowd the child.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

__all__ = ["cuda_peak_over", "measure_in_fresh_process", "peak_rss_over", "proc_status_kb",
           "release_freed_memory", "summarise", "sync", "timed", "timed_interleaved"]

Clock = Callable[[], float]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for elsewhere."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def summarise(times: Sequence[float]) -> dict:
    """``median_s``, ``min_s``, ``max_s`` and ``runs`` of a list of durations in seconds."""
    if not times:
        raise ValueError("no timed runs to summarise")
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs": len(times)}


def timed_interleaved(fns: Mapping[str, Callable[[], object]], device: torch.device,
                      repeats: int, warmup: int = 1, clock: Clock = time.perf_counter) -> dict:
    """``{name: summary}`` for each callable of ``fns``: ``warmup`` untimed calls of each, then
    ``repeats`` rounds in which every callable runs once, in the order of ``fns``."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            sync(device)
            times[name].append(clock() - start)
    return {name: summarise(t) for name, t in times.items()}


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1,
          clock: Clock = time.perf_counter) -> dict:
    """The summary of ``repeats`` timed calls of ``fn`` after ``warmup`` untimed ones."""
    return timed_interleaved({"fn": fn}, device, repeats, warmup, clock)["fn"]


def cuda_peak_over(step: Callable[[], object], device: torch.device) -> dict:
    """``peak_bytes`` (CUDA max allocated during ``step``) and ``rise_bytes`` (over the memory
    allocated before it)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {"peak_bytes": peak, "rise_bytes": peak - before}


# -- peak resident memory on the CPU (Linux) -------------------------------------------------


def proc_status_kb(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ...)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rss_over(step: Callable[[], object]) -> dict:
    """Run ``step``; the peak resident set during it (``peak_kb``), its rise over the resident
    set before it (``rise_kb``) and the ``method`` used.

    The process's high-water mark (``VmHWM``) is reset to the current resident set through
    ``/proc/self/clear_refs`` first (Linux >= 4.0), so that earlier work (building the model)
    does not count; where that is refused, the peak since process start is used and the method
    says so.
    """
    base_kb = proc_status_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        method = "VmHWM rise over the step (reset by clear_refs)"
    except OSError:
        method = "VmHWM rise (peak since process start: includes earlier work)"
    step()
    peak_kb = proc_status_kb("VmHWM")
    return {"peak_kb": peak_kb, "rise_kb": peak_kb - base_kb, "method": method}


def release_freed_memory() -> None:
    """Collect garbage and hand the C heap's freed pages back to the system (glibc's
    ``malloc_trim``; a no-op elsewhere), so that a process which ran a large step does not keep
    gigabytes it no longer uses while a measured subprocess runs beside it."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_in_fresh_process(module: str, args: Sequence[str]) -> dict:
    """Run ``python -m module *args`` in a new interpreter and return the JSON object it prints
    on its last line (RuntimeError with the end of its stderr if it fails)."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True)
    if proc.returncode:
        raise RuntimeError(f"{module} failed: "
                           + " | ".join(proc.stderr.strip().splitlines()[-2:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])
