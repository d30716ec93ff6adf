"""The arithmetic precision of a run: :func:`resolve_amp` turns ``off``, ``bf16``, ``fp16`` or ``auto``
into an autocast dtype (None: float32) and one line saying why. ``auto`` picks bfloat16 only where the
hardware multiplies it natively (benchmarks/README.md: bf16 without bf16 units is many times slower)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional, Union

import torch

AMP_CHOICES = ("off", "bf16", "fp16", "auto")
CPUINFO = Path("/proc/cpuinfo")
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


class PrecisionError(ValueError):
    """A precision that this device cannot run (fp16 on a CPU) or an unknown setting."""


def cpu_bf16_flags(cpuinfo: Union[str, Path] = CPUINFO) -> tuple[str, ...]:
    """The native-bfloat16 CPU flags that ``cpuinfo`` lists; empty when none or unreadable."""
    try:
        lines = Path(cpuinfo).read_text(errors="replace").splitlines()
    except OSError:
        return ()
    flags = {f for line in lines if line.startswith("flags") and ":" in line for f in line.split(":", 1)[1].split()}
    return tuple(f for f in _BF16_CPU_FLAGS if f in flags)


def _onednn_bf16() -> bool:
    """Whether PyTorch's oneDNN runs bfloat16 convolutions on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def native_bf16(device: Union[str, torch.device]) -> tuple[bool, str]:
    """Whether ``device`` multiplies bfloat16 natively (emulation on older GPUs does not count), and
    the evidence in words; on a CPU both the CPU flags and oneDNN's bf16 path are needed."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "no CUDA: no bf16 support"
        ok = bool(torch.cuda.is_bf16_supported(including_emulation=False))
        return ok, f"{torch.cuda.get_device_name(device)}: {'bf16 supported' if ok else 'no bf16 support'}"
    if device.type != "cpu":
        return False, f"{device.type}: no bf16 check for this device type"
    flags, onednn = cpu_bf16_flags(), _onednn_bf16()
    return bool(flags) and onednn, (f"CPU flags {', '.join(flags) or 'without amx_bf16 / avx512_bf16'}, oneDNN bf16 "
                                    f"{'yes' if onednn else 'no'}, vector ISA {torch.backends.cpu.get_cpu_capability()}")


def resolve_amp(request: str, device: Union[str, torch.device]) -> tuple[Optional[torch.dtype], str]:
    """``(autocast dtype or None for float32, one line saying what runs and why)``."""
    device = torch.device(device)
    if request not in AMP_CHOICES:
        raise PrecisionError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {request!r}")
    if request == "off":
        return None, f"precision: float32 (amp off) on {device.type}"
    if request == "fp16":
        if device.type != "cuda":
            raise PrecisionError(f"amp fp16 needs a CUDA device (running on {device.type}); use bf16, auto or off")
        return torch.float16, "precision: float16 autocast on cuda (amp fp16)"
    native, evidence = native_bf16(device)
    if request == "auto":
        return ((torch.bfloat16, f"precision: bfloat16 autocast on {device.type} (amp auto: {evidence})") if native
                else (None, f"precision: float32 on {device.type} (amp auto: {evidence})"))
    if native:
        return torch.bfloat16, f"precision: bfloat16 autocast on {device.type} ({evidence})"
    if device.type == "cuda":
        raise PrecisionError(f"amp bf16 is not supported by this GPU ({evidence}); use fp16 or off")
    return torch.bfloat16, (f"precision: bfloat16 autocast on {device.type} as asked, but this device has no "
                            f"native bf16 units ({evidence}): emulated, expect it to be much slower than float32")


def autocast(device: Union[str, torch.device], dtype: Optional[torch.dtype]):
    """``torch.autocast`` for ``dtype`` on ``device``'s type, or autocast disabled for None."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, enabled=False) if dtype is None else torch.autocast(device_type, dtype=dtype)


@contextlib.contextmanager
def strict_float32():
    """float32 products and cuDNN convolutions without TF32 inside the block (metrics are computed
    alike whatever ``train.tf32``); the previous settings come back after it."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
