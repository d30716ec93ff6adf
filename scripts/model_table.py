"""Model table: parameters, generator GFLOPs and training memory for every config and ablation.

    python scripts/model_table.py [--configs C.yaml ...] [--overlays] [--device auto]
                                  [--no-memory] [--out benchmarks/model_table]

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
  set size over the step, measured in a fresh subprocess per row (``VmHWM`` reset through
  ``/proc/self/clear_refs`` where the kernel allows it).

A config whose networks cannot be built yet gets its error in the table instead of numbers.
The table is printed as Markdown and written to ``<out>.md`` and ``<out>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xinggan.config import ConfigError, load_config  # noqa: E402

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


def generator_inputs(cfg, device: torch.device, batch: int = 1):
    from xinggan.models.generator import NUM_KEYPOINTS

    g = torch.Generator().manual_seed(0)
    h, w = cfg.data.height, cfg.data.width
    source_image = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    source_pose = torch.rand(batch, NUM_KEYPOINTS, h, w, generator=g)
    target_pose = torch.rand(batch, NUM_KEYPOINTS, h, w, generator=g)
    target_image = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    return [t.to(device) for t in (source_image, source_pose, target_pose, target_image)]


def _image(output):
    return output[0] if isinstance(output, (tuple, list)) else output


def generator_gflops(generator: torch.nn.Module, cfg, device: torch.device) -> float:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    source_image, source_pose, target_pose, _ = generator_inputs(cfg, device)
    generator.eval()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        generator(source_image, source_pose, target_pose)
    return counter.get_total_flops() / 1e9


def training_step(generator: torch.nn.Module, cfg, device: torch.device) -> None:
    """Generator forward in train mode + L1 loss + backward, batch 1."""
    source_image, source_pose, target_pose, target_image = generator_inputs(cfg, device)
    generator.train()
    fake = _image(generator(source_image, source_pose, target_pose))
    (fake - target_image).abs().mean().backward()


def cuda_peak_memory(generator: torch.nn.Module, cfg, device: torch.device) -> dict:
    generator.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    training_step(generator, cfg, device)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    generator.zero_grad(set_to_none=True)
    return {"peak_mb": peak / 2**20, "rise_mb": (peak - before) / 2**20,
            "method": "cuda max_memory_allocated"}


def cpu_memory_child(config: str, overlay: Optional[str]) -> dict:
    """Runs in a fresh process: peak RSS rise over one training step."""
    cfg = load(config, overlay)
    generator = build(cfg)[0]
    device = torch.device("cpu")
    generator_inputs(cfg, device)  # import and allocate everything but the step itself
    from scripts.memory_probe import peak_rss_over

    res = peak_rss_over(lambda: training_step(generator, cfg, device))
    return {"peak_mb": res["peak_kb"] / 1024, "rise_mb": res["rise_kb"] / 1024,
            "method": res["method"]}


def cpu_peak_memory(config: str, overlay: Optional[str]) -> dict:
    from scripts.memory_probe import measure_in_fresh_process

    return measure_in_fresh_process(Path(__file__).resolve(),
                                    ["--memory-child", config, *([overlay] if overlay else [])])


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
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                        capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return info


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--memory-child":  # internal: one CPU memory measurement
        print(json.dumps(cpu_memory_child(argv[1], argv[2] if len(argv) > 2 else None)))
        return 0
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, metavar="YAML")
    p.add_argument("--overlays", action="store_true",
                   help="also every configs/ablations/*.yaml on top of each config")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-memory", action="store_true", help="skip the training-step memory")
    p.add_argument("--out", default="benchmarks/model_table",
                   help="output prefix: <out>.md and <out>.json")
    args = p.parse_args(argv)

    from tqdm import tqdm

    device = pick_device(args.device)
    todo = rows_to_measure([resolve(c) for c in args.configs], args.overlays)
    rows = []
    for config, overlay in tqdm(todo, desc="model table", unit="config"):
        rows.append(measure(config, overlay, device, not args.no_memory))
    table = markdown(rows, machine(device).get("gpu", "CPU") if device.type == "cuda" else "CPU")
    print(table)
    out = Path(args.out)
    if not out.is_absolute():
        out = REPO / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table)
    out.with_suffix(".json").write_text(json.dumps(
        {"machine": machine(device), "rows": rows}, indent=1) + "\n")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
