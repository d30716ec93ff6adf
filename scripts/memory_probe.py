"""Peak resident memory of one step on CPU (Linux), for the benchmark and model-table scripts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence


def proc_status_kb(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ...)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rss_over(step: Callable[[], object]) -> dict:
    """Run ``step`` and return the peak resident set during it and its rise over the resident
    set before it, in kB, with the method used.

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


def measure_in_fresh_process(script: Path, args: Sequence[str]) -> dict:
    """Run ``python script *args`` in a fresh process (so that nothing this process did inflates
    the peak it measures) and return the JSON object the script prints on its last line."""
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          cwd=Path(script).resolve().parents[1])
    if proc.returncode:
        raise RuntimeError("memory subprocess failed: "
                           + " | ".join(proc.stderr.strip().splitlines()[-2:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])
