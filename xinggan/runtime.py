"""The process-wide backend flags of a run, set in one place (:func:`configure_backends`, called by
train.py, test.py and the benchmarks once the device is known and before any CUDA work; what it sets
and why: docs/determinism.md), this process's device, and what a measurement ran on."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torchvision

from xinggan.config import ConfigError

CUBLAS_WORKSPACE_CONFIG = ":4096:8"
REPO = Path(__file__).resolve().parents[1]


def configure_backends(device: Union[torch.device, str], *, deterministic: bool = False,
                       tf32: bool = True) -> list[str]:
    """Set the backend flags for a run on ``device`` (deterministic mode both ways, on every call;
    TF32 and cuDNN on CUDA; denormals flushed on the CPU); one line per setting."""
    device = torch.device(device)
    lines = ["deterministic algorithms off (train.deterministic)"]
    if deterministic:
        late = "CUBLAS_WORKSPACE_CONFIG" not in os.environ and torch.cuda.is_initialized()
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)  # cuBLAS reads it once
        lines = ["deterministic algorithms on (train.deterministic), CUBLAS_WORKSPACE_CONFIG="
                 f"{os.environ['CUBLAS_WORKSPACE_CONFIG']}" + (" (set after CUDA started: a cuBLAS handle "
                 "created before now keeps its nondeterministic workspace)" if late else "")]
    torch.use_deterministic_algorithms(deterministic)
    if device.type == "cuda":  # the legacy allow_tf32 flags: fp32_precision would break their getters
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        lines.append("cuda: TF32 matmuls and convolutions on (train.tf32)" if tf32 else
                     "cuda: TF32 off, strict float32 matmuls and convolutions (train.tf32)")
        lines.append("cuda: cudnn.benchmark off, cudnn.deterministic on" if deterministic else
                     "cuda: cudnn.benchmark on")
    elif device.type == "cpu":
        lines.append("cpu: denormals flushed to zero" if torch.set_flush_denormal(True) else
                     "cpu: flushing denormals is not supported here")
    return lines


class DeviceError(ConfigError):
    """A device that is not there, or that this process cannot take."""


def distributed_context() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (1 process without it)."""
    return tuple(int(os.environ.get(k, d)) for k, d in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")))


def pick_device(name: str, local_rank: Optional[int] = None,
                world_size: Optional[int] = None) -> torch.device:
    """The device of this process: ``auto`` (CUDA where there is one), ``cpu``, ``cuda:N``, or ``cuda``:
    the only visible GPU, else that of the local rank (LOCAL_RANK, SLURM_LOCALID, RANK modulo the count)."""
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


def versions() -> dict:
    """Python, torch, torchvision, numpy and CUDA versions, and the platform."""
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "numpy": np.__version__, "cuda": torch.version.cuda,
            "platform": platform.platform()}


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
    info = {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), **versions()}
    gpu = torch.device(device if device is not None else "cuda:0")
    info.update({"device": str(device)} if device is not None else {})
    if torch.cuda.is_available() and gpu.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(gpu)
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                        capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        info["commit"] = "unknown"
    return info
