"""Choosing the arithmetic precision of a run: ``off`` (float32), ``bf16``, ``fp16`` or ``auto``.

:func:`resolve_amp` turns a requested setting (``eval.amp``, ``scripts/benchmark.py --amp``,
``scripts/demo.py``) into the autocast dtype to run with (``None``: float32) and one line that
says what was chosen and why; callers print that line once at start.

``auto`` picks bfloat16 only where the hardware multiplies bfloat16 natively, else float32:

- CUDA: ``torch.cuda.is_bf16_supported(including_emulation=False)`` for the current GPU, which
  ``train.py`` and ``test.py`` make the run's own first (Ampere and newer; the default,
  ``including_emulation=True``, also says yes on older GPUs, where bfloat16 tensors exist but
  run emulated and slow);
- CPU: the CPU flags ``amx_bf16`` (Intel AMX, Sapphire Rapids and newer) or ``avx512_bf16``
  (Cooper Lake, Sapphire Rapids, AMD Zen 4 and newer), read from ``/proc/cpuinfo``, *and*
  ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``, i.e. PyTorch's oneDNN can run bfloat16
  convolutions on this CPU. Without oneDNN's bfloat16 path PyTorch runs a bfloat16 convolution
  through its generic im2col fallback (``aten::_slow_conv2d_forward``), which on an AVX2-only
  CPU made the generator 20 to 40 times *slower* than float32 (benchmarks/README.md). The CPU
  flags are what ``lscpu`` lists; ``torch.backends.cpu.get_cpu_capability()`` only reports the
  vector width PyTorch dispatches to (``AVX2``, ``AVX512``), not the bfloat16 instructions, so
  it is recorded in the message but not used for the choice. Where ``/proc/cpuinfo`` cannot be
  read (not Linux), ``auto`` stays on float32.

An explicit ``bf16`` is honoured everywhere (bfloat16 autocast runs on any CPU); on a CPU
without those units the message says that it is emulated and slow. ``fp16`` needs CUDA: on a
CPU it raises :class:`PrecisionError` with a one-line reason.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional, Union

import torch

AMP_CHOICES = ("off", "bf16", "fp16", "auto")
CPUINFO = Path("/proc/cpuinfo")
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

__all__ = ["AMP_CHOICES", "PrecisionError", "cpu_bf16_flags", "native_bf16", "resolve_amp",
           "autocast", "strict_float32"]


class PrecisionError(ValueError):
    """A precision that this device cannot run (fp16 on a CPU) or an unknown setting."""


def cpu_bf16_flags(cpuinfo: Union[str, Path] = CPUINFO) -> tuple[str, ...]:
    """The native-bfloat16 CPU flags (``amx_bf16``, ``avx512_bf16``) that ``cpuinfo`` lists;
    empty when there are none or the file cannot be read."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    return tuple(f for f in _BF16_CPU_FLAGS if f in flags)


def _onednn_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def native_bf16(device: Union[str, torch.device]) -> tuple[bool, str]:
    """Whether ``device`` multiplies bfloat16 natively, and the evidence in words."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "no CUDA: no bf16 support"
        ok = bool(torch.cuda.is_bf16_supported(including_emulation=False))
        name = torch.cuda.get_device_name(device)
        return ok, f"{name}: {'bf16 supported' if ok else 'no bf16 support'}"
    if device.type != "cpu":
        return False, f"{device.type}: no bf16 check for this device type"
    flags = cpu_bf16_flags()
    onednn = _onednn_bf16()
    capability = torch.backends.cpu.get_cpu_capability()
    evidence = (f"CPU flags {', '.join(flags) if flags else 'without amx_bf16 / avx512_bf16'}, "
                f"oneDNN bf16 {'yes' if onednn else 'no'}, vector ISA {capability}")
    return bool(flags) and onednn, evidence


def resolve_amp(request: str, device: Union[str, torch.device]) -> tuple[Optional[torch.dtype], str]:
    """``(autocast dtype or None for float32, one line saying what runs and why)``."""
    device = torch.device(device)
    if request not in AMP_CHOICES:
        raise PrecisionError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {request!r}")
    if request == "off":
        return None, f"precision: float32 (amp off) on {device.type}"
    if request == "fp16":
        if device.type != "cuda":
            raise PrecisionError(f"amp fp16 needs a CUDA device (running on {device.type}); "
                                 "use bf16, auto or off")
        return torch.float16, "precision: float16 autocast on cuda (amp fp16)"
    native, evidence = native_bf16(device)
    if request == "bf16" and device.type == "cuda" and not native:
        raise PrecisionError(f"amp bf16 is not supported by this GPU ({evidence}); use fp16 or off")
    if request == "bf16":
        if native:
            return torch.bfloat16, f"precision: bfloat16 autocast on {device.type} ({evidence})"
        return torch.bfloat16, (f"precision: bfloat16 autocast on {device.type} as asked, but "
                                f"this device has no native bf16 units ({evidence}): emulated, "
                                "expect it to be much slower than float32")
    if native:
        return torch.bfloat16, f"precision: bfloat16 autocast on {device.type} (amp auto: {evidence})"
    return None, f"precision: float32 on {device.type} (amp auto: {evidence})"


def autocast(device: Union[str, torch.device], dtype: Optional[torch.dtype]):
    """``torch.autocast`` for ``dtype`` on ``device``'s type, or autocast disabled for None."""
    device_type = torch.device(device).type
    if dtype is None:
        return torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype=dtype)


@contextlib.contextmanager
def strict_float32():
    """float32 matrix products and cuDNN convolutions without TF32 inside the block (the
    previous settings come back after it): metrics are computed the same way whatever the run's
    ``train.tf32`` and whichever entry point scores them.  Changes nothing on the CPU."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
