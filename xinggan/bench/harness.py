"""How things are measured: interleaved timing (CUDA synchronised at every clock reading), memory
peaks (on the CPU in a fresh interpreter), dispatched ops, host reads and GPU busy time."""
from __future__ import annotations

import ctypes
import gc
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

PACKAGE = Path(__file__).resolve().parents[1]  # host reads are counted in xinggan/, not here
BENCH = Path(__file__).resolve().parent
READ_METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "numpy", "cpu")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA only)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed_interleaved(fns: Mapping[str, Callable[[], object]], device: torch.device, repeats: int,
                      warmup: int = 1, clock: Callable[[], float] = time.perf_counter) -> dict:
    """``{name: {median_s, min_s, max_s, runs}}``: ``warmup`` untimed calls of each, then ``repeats``
    rounds in which each runs once, in order (a drifting machine affects all alike)."""
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
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "runs": len(t)}
            for name, t in times.items()}


def cuda_peak_gb(step: Callable[[], object], device: torch.device) -> float:
    """The rise of CUDA's max allocated memory during one ``step`` over that before it, in GiB."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**30


def _status_kb(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def peak_rss_over(step: Callable[[], object]) -> dict:
    """Run ``step``: the peak resident set (kB) and its rise over the resident set before; the
    high-water mark is reset through ``/proc/self/clear_refs`` first where Linux allows."""
    base, method = _status_kb("VmRSS"), "VmHWM rise over the step (reset by clear_refs)"
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        method = "VmHWM rise (peak since process start: includes earlier work)"
    step()
    peak = _status_kb("VmHWM")
    return {"peak_kb": peak, "rise_kb": peak - base, "method": method}


def in_fresh_process(fn: Callable, *args):
    """``fn(*args)`` (a module-level function) in a newly spawned interpreter, after returning this
    process's freed heap pages to the system."""
    gc.collect()
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


class _Counter(TorchDispatchMode):
    """Counts every aten op dispatched, and the device-to-host reads among them."""

    def __init__(self):
        super().__init__()
        self.ops, self.reads, self.by_op = 0, 0, {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops += 1
        name = str(func.overloadpacket)
        self.by_op[name] = self.by_op.get(name, 0) + 1
        src = args[1] if name == "aten.copy_" else args[0] if args else None
        to_host = ((name == "aten._to_copy" and str(kwargs.get("device", "")) == "cpu")
                   or (name == "aten.copy_" and args[0].device.type == "cpu"))
        self.reads += name == "aten._local_scalar_dense" or (
            to_host and torch.is_tensor(src) and src.device.type != "cpu")
        return func(*args, **kwargs)


def count_ops(step: Callable[[], object], device: torch.device) -> dict:
    """Run ``step``: aten ops dispatched (``top``: the ten commonest) and host reads: on CUDA scalar
    reads and device-to-host copies, on the CPU the package's item/tolist/bool/float/int/numpy/cpu calls."""
    calls = {"n": 0}
    saved = {name: getattr(torch.Tensor, name) for name in READ_METHODS}

    def counted(method):
        def read(self, *args, **kwargs):
            caller = Path(sys._getframe(1).f_code.co_filename)
            calls["n"] += PACKAGE in caller.parents and BENCH not in caller.parents
            return method(self, *args, **kwargs)
        return read

    counter = _Counter()
    try:
        for name, method in saved.items():
            setattr(torch.Tensor, name, counted(method))
        with counter:
            step()
        sync(device)
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)
    cpu = torch.device(device).type == "cpu"
    return {"ops": counter.ops, "top": dict(sorted(counter.by_op.items(), key=lambda kv: -kv[1])[:10]),
            "host_reads": calls["n"] if cpu else counter.reads,
            "host_reads_method": "package calls of item/tolist/bool/float/int/numpy/cpu" if cpu
            else "aten._local_scalar_dense and device-to-host copies"}


def union_seconds(intervals: Sequence[tuple[float, float]]) -> float:
    """The length of the union of ``(start, end)`` intervals."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def gpu_busy(step: Callable[[], object], device: torch.device, iterations: int = 20) -> dict:
    """``iterations`` calls of ``step`` under torch.profiler after one untimed call: the time some
    CUDA kernel ran (the union of their intervals) over the wall time."""
    step()
    sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(iterations):
            step()
        sync(device)
        wall = time.perf_counter() - start
    kernels = [(e.time_range.start / 1e6, e.time_range.end / 1e6) for e in prof.events()
               if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = union_seconds(kernels)
    return {"iterations": iterations, "kernel_s": busy, "wall_s": wall, "busy": busy / wall, "kernels": len(kernels)}
