"""Model table: parameters, generator GFLOPs and training memory for every config and ablation.

    python scripts/model_table.py [--configs C.yaml ...] [--overlays] [--device auto]
                                  [--no-memory] [--out runs/benchmarks/model_table]

For every config (default: the four paper configs ``configs/{market,deepfashion}{,_xingganpp}
.yaml``) and, with ``--overlays``, every overlay of ``configs/ablations/`` on top of each of
them (skipping an overlay that leaves that config unchanged, e.g. ``no_dense_fusion`` on
XingGAN), it records:

- ``params``: parameters of the generator and of the shape and appearance discriminators;
- ``gflops``: generator forward of one image (batch 1, eval mode), counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add; convolutions,
  transposed convolutions, matrix products; element-wise work such as norms and softmax is not
  counted).  Attention runs on SDPA's math backend while counting, so the count is the same on
  every device (the counter does not know the fused CPU kernel);
- ``peak memory``: one generator training step at batch 1 (train mode, forward, L1 loss against
  a random target, backward; a proxy for the full step, which adds the discriminators and VGG).
  On CUDA: ``max_memory_allocated`` during the step (weights, gradients and activations) and its
  rise above the memory held before the step.  On CPU: the rise of the process's peak resident
  set size over the step, measured in a fresh subprocess per row
  (``python -m xinggan.bench.memory``; ``VmHWM`` reset through ``/proc/self/clear_refs`` where
  the kernel allows it).

A config whose networks cannot be built yet gets its error in the table instead of numbers.
The table is printed as Markdown and written to ``<out>.md`` and ``<out>.json``; ``--out``
defaults to ``runs/benchmarks/model_table`` (git-ignored): the stored table of ``benchmarks/``
is rewritten only with ``--out benchmarks/model_table``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from xinggan import runtime
from xinggan.bench import harness, report
from xinggan.bench.workloads import seeded_inputs
from xinggan.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = ["configs/market.yaml", "configs/deepfashion.yaml",
                   "configs/market_xingganpp.yaml", "configs/deepfashion_xingganpp.yaml"]
OVERLAY_DIR = REPO / "configs" / "ablations"


# --------------------------------------------------------------------------------------
# building and measuring one row
# --------------------------------------------------------------------------------------


def resolve(path: str) -> str:
    """A config path as given (relative to the working directory) or relative to the repository."""
    p = Path(path)
    if not p.is_file() and (REPO / p).is_file():
        p = REPO / p
    return str(p.resolve())


def display(path: Optional[str]) -> Optional[str]:
    """Paths in the outputs are relative to the repository (never this machine's absolute)."""
    if path is None:
        return None
    p = Path(path)
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return p.name


def load(config: str, overlay: Optional[str]):
    return load_config([config] + ([overlay] if overlay else []))


def build(cfg):
    from xinggan.models import build_discriminators, build_generator

    generator = build_generator(cfg)
    shape_discriminator, appearance_discriminator = build_discriminators(cfg)
    return generator, shape_discriminator, appearance_discriminator


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _image(output):
    return output[0] if isinstance(output, (tuple, list)) else output


def generator_gflops(generator: torch.nn.Module, cfg, device: torch.device) -> float:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    source_image, source_pose, target_pose, _ = seeded_inputs(cfg, 1, device)
    generator.eval()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        generator(source_image, source_pose, target_pose)
    return counter.get_total_flops() / 1e9


def cuda_peak_memory(generator: torch.nn.Module, cfg, device: torch.device) -> dict:
    """Peak and rise of CUDA's allocated memory over one generator training step at batch 1
    (train mode, forward, L1 loss against a random target, backward)."""
    source_image, source_pose, target_pose, target_image = seeded_inputs(cfg, 1, device)
    generator.train()
    generator.zero_grad(set_to_none=True)
    torch.cuda.empty_cache()

    def step():
        fake = _image(generator(source_image, source_pose, target_pose))
        (fake - target_image).abs().mean().backward()

    res = harness.cuda_peak_over(step, device)
    generator.zero_grad(set_to_none=True)
    return {"peak_mb": res["peak_bytes"] / 2**20, "rise_mb": res["rise_bytes"] / 2**20,
            "method": "cuda max_memory_allocated"}


def cpu_peak_memory(config: str, overlay: Optional[str]) -> dict:
    """Peak RSS and its rise over one generator training step at batch 1, measured in a fresh
    process (``python -m xinggan.bench.memory``)."""
    args = ["--config", config, *(["--config", overlay] if overlay else []), "--batch", "1"]
    res = harness.measure_in_fresh_process("xinggan.bench.memory", args)
    return {"peak_mb": res["peak_kb"] / 1024, "rise_mb": res["rise_kb"] / 1024,
            "method": res["method"]}


def measure(config: str, overlay: Optional[str], device: torch.device, memory: bool) -> dict:
    row = {"config": display(config), "overlay": display(overlay)}
    try:
        cfg = load(config, overlay)
        generator, shape_d, appearance_d = build(cfg)
    except (NotImplementedError, ValueError, ConfigError) as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    row["model"] = cfg.model.name
    row["params"] = {"generator": count(generator), "shape_discriminator": count(shape_d),
                     "appearance_discriminator": count(appearance_d)}
    del shape_d, appearance_d
    generator.to(device)
    t0 = time.perf_counter()
    row["gflops"] = generator_gflops(generator, cfg, device)
    row["forward_count_s"] = time.perf_counter() - t0
    if memory:
        if device.type == "cuda":
            row["memory"] = cuda_peak_memory(generator, cfg, device)
        else:
            del generator
            row["memory"] = cpu_peak_memory(config, overlay)
    return row


# --------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------


def rows_to_measure(configs: list[str], overlays: bool) -> list[tuple[str, Optional[str]]]:
    """(config, overlay) pairs; an overlay that leaves a config unchanged is skipped."""
    rows: list[tuple[str, Optional[str]]] = []
    for config in configs:
        rows.append((config, None))
        if not overlays:
            continue
        base = load(config, None)
        for path in sorted(OVERLAY_DIR.glob("*.yaml")):
            overlay = str(path)
            try:
                if load(config, overlay) == base:
                    continue
            except ConfigError:
                pass  # kept: the row will show the error
            rows.append((config, overlay))
    return rows


def _millions(n: int) -> str:
    return f"{n / 1e6:.3f} M"


def markdown(rows: list[dict], device: str) -> str:
    lines = [
        f"Parameters, generator GFLOPs per image (batch 1) and peak memory of one generator "
        f"training step at batch 1 (forward + L1 backward), on {device}.",
        "",
        "| config | overlay | G params | D_shape params | D_appearance params | G GFLOPs "
        "| peak memory (MB) | rise (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        name = Path(row["config"]).stem
        overlay = Path(row["overlay"]).stem if row["overlay"] else "-"
        if "error" in row:
            lines.append(f"| {name} | {overlay} | not built: {row['error'][:120]} | | | | | |")
            continue
        p = row["params"]
        mem = row.get("memory")
        peak = f"{mem['peak_mb']:.0f}" if mem else "-"
        rise = f"{mem['rise_mb']:.0f}" if mem else "-"
        lines.append(
            f"| {name} | {overlay} | {_millions(p['generator'])} | "
            f"{_millions(p['shape_discriminator'])} | {_millions(p['appearance_discriminator'])} "
            f"| {row['gflops']:.2f} | {peak} | {rise} |")
    methods = sorted({row["memory"]["method"] for row in rows if row.get("memory")})
    if methods:
        lines += ["", "Memory: " + "; ".join(methods) + "."]
    return "\n".join(lines) + "\n"


def machine(device: torch.device) -> dict:
    """:func:`xinggan.runtime.machine`, with the ``cpu_threads`` key of the earlier reports."""
    return {**runtime.machine(device), "cpu_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, metavar="YAML")
    p.add_argument("--overlays", action="store_true",
                   help="also every configs/ablations/*.yaml on top of each config")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-memory", action="store_true", help="skip the training-step memory")
    p.add_argument("--out", default=None,
                   help="output prefix: <out>.md and <out>.json (default: "
                        "runs/benchmarks/model_table; relative to the repository root)")
    args = p.parse_args(argv)

    from xinggan.progress import progress as progress_bar

    try:
        device = runtime.pick_device(args.device)
    except runtime.DeviceError as exc:
        p.error(str(exc))
    todo = rows_to_measure([resolve(c) for c in args.configs], args.overlays)
    rows = []
    for config, overlay in progress_bar(todo, desc="model table", unit="config"):
        rows.append(measure(config, overlay, device, not args.no_memory))
    info = machine(device)
    table = markdown(rows, info.get("gpu", "CPU") if device.type == "cuda" else "CPU")
    print(table)
    json_path, md_path = report.write_pair(report.resolve_out(args.out, "model_table"),
                                           {"machine": info, "rows": rows}, table)
    print(f"wrote {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
