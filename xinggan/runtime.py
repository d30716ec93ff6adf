"""The process-wide backend flags of a run, set in one place.

:func:`configure_backends` is called by ``train.py``, ``test.py``, ``scripts/benchmark.py``
and ``scripts/gpu_check.py`` once the device is known, so that the configuration that is
benchmarked is the one that trains. It sets:

- ``torch.use_deterministic_algorithms(deterministic)``, on every call, both ways: the flags
  are those of the config at hand, and a second call in the same process (tests, a script
  that evaluates after training) does not inherit the first one's setting. With
  ``deterministic`` it also puts ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment (a
  value already there is kept), which cuBLAS needs for reproducible matrix products. cuBLAS
  reads it when it creates its handle, at the first matrix product on a GPU, so the call has
  to come before any CUDA work: ``train.py`` makes it right after choosing the device, before
  ``dist.init_process_group`` and before any model is built.
- On CUDA: TF32 for float32 matrix products and cuDNN convolutions (``tf32``, the config's
  ``train.tf32``; Ampere and newer GPUs round the inputs of those products to a 10-bit
  mantissa and accumulate in float32, which is much faster than strict float32),
  ``cudnn.benchmark`` (autotuned convolution algorithms) unless ``deterministic``, and
  ``cudnn.deterministic = deterministic``. TF32 is set through
  ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32``: PyTorch
  2.14 takes them without a warning, whereas its newer per-backend
  ``fp32_precision`` settings, once used, make ``torch.get_float32_matmul_precision()`` and
  the ``allow_tf32`` getters raise a RuntimeError ("a mix of the legacy and new APIs"), and
  Inductor (``train.compile``) and other code read those.
- On the CPU: denormal floats flushed to zero (``torch.set_flush_denormal``). Denormals take
  a slow path on x86 CPUs; flushing them changes nothing a GAN can notice and made the toy
  config's training about 30% faster on a 2-core CPU.

It returns one short line per setting, for the caller to print (joined with ``"; "``) or
keep in a report.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from xinggan.config import ConfigError

CUBLAS_WORKSPACE_CONFIG = ":4096:8"

__all__ = ["CUBLAS_WORKSPACE_CONFIG", "DeviceError", "configure_backends", "distributed_context",
           "machine", "pick_device", "versions"]

REPO = Path(__file__).resolve().parents[1]


def configure_backends(device: Union[torch.device, str], *, deterministic: bool = False,
                       tf32: bool = True) -> list[str]:
    """Set the process-wide backend flags for a run on ``device``; the lines say what was set.

    Call it before any CUDA work (see the module docstring): with ``deterministic`` it sets
    ``CUBLAS_WORKSPACE_CONFIG``, which cuBLAS reads only when it starts.
    """
    device = torch.device(device)
    lines = []
    if deterministic:
        late = "CUBLAS_WORKSPACE_CONFIG" not in os.environ and _cuda_started()
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
        line = ("deterministic algorithms on (train.deterministic), CUBLAS_WORKSPACE_CONFIG="
                f"{os.environ['CUBLAS_WORKSPACE_CONFIG']}")
        if late:
            line += (" (set after CUDA started: a cuBLAS handle created before now keeps "
                     "its nondeterministic workspace)")
        lines.append(line)
    else:
        lines.append("deterministic algorithms off (train.deterministic)")
    torch.use_deterministic_algorithms(deterministic)

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        lines.append("cuda: TF32 matmuls and convolutions on (train.tf32)" if tf32 else
                     "cuda: TF32 off, strict float32 matmuls and convolutions (train.tf32)")
        lines.append("cuda: cudnn.benchmark off, cudnn.deterministic on" if deterministic else
                     "cuda: cudnn.benchmark on")
    elif device.type == "cpu":
        if torch.set_flush_denormal(True):
            lines.append("cpu: denormals flushed to zero")
        else:
            lines.append("cpu: flushing denormals is not supported here")
    return lines


def _cuda_started() -> bool:
    try:
        return torch.cuda.is_initialized()
    except (AttributeError, RuntimeError):
        return False


# -- this process: its rank, its device ------------------------------------------------------


class DeviceError(ConfigError):
    """A device that is not there, or that this process cannot take."""


def distributed_context() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (1 process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, local, world


def pick_device(name: str, local_rank: Optional[int] = None,
                world_size: Optional[int] = None) -> torch.device:
    """The device of this process.

    ``auto``: CUDA when there is one, else the CPU; ``cpu`` or ``cuda:N`` as named; ``cuda``: this
    process's GPU: the only visible one (``srun --gpus-per-task=1``), else the one of its local
    rank (``LOCAL_RANK``, else Slurm's ``SLURM_LOCALID``, else ``RANK`` modulo the GPU count).
    Refused with a :class:`DeviceError`: CUDA where there is none, a local rank without its GPU,
    and ``cuda:N`` in a run of several processes (choose GPUs with ``CUDA_VISIBLE_DEVICES``).
    """
    rank, _, env_world = distributed_context()
    world_size = env_world if world_size is None else world_size
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not name.startswith("cuda"):
        try:
            return torch.device(name)
        except RuntimeError as error:
            raise DeviceError(f"device {name!r}: {error}") from None
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r}: no CUDA device is available here (use cpu or auto)")
    count = torch.cuda.device_count()
    if name != "cuda":
        if world_size > 1:
            raise DeviceError(
                f"device {name!r} names one GPU, but this run has {world_size} processes and each "
                "takes the GPU of its local rank: use cuda or auto (choose the GPUs with "
                "CUDA_VISIBLE_DEVICES)")
        device = torch.device(name)
    elif count == 1:
        device = torch.device("cuda:0")
    else:
        if local_rank is None:
            local = os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID"))
            local_rank = int(local) if local is not None else rank % count
        device = torch.device(f"cuda:{local_rank}")
    if device.index is not None and device.index >= count:
        raise DeviceError(f"device {device}: only {count} GPU(s) are visible here "
                          f"(local rank {local_rank})")
    return device


# -- describing the machine and the software ------------------------------------------------


def versions() -> dict:
    """Python, torch, torchvision, numpy and CUDA versions, and the platform."""
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device: Union[torch.device, str, None] = None) -> dict:
    """What a measurement ran on: CPU, cores, torch threads, GPU, versions and the commit."""
    info = {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            **versions()}
    if device is not None:
        info["device"] = str(device)
    gpu = torch.device(device) if device is not None else None
    if torch.cuda.is_available() and (gpu is None or gpu.type == "cuda"):
        info["gpu"] = torch.cuda.get_device_name(gpu if gpu is not None else 0)
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                        capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        info["commit"] = "unknown"
    return info
