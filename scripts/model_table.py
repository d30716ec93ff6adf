"""Model table: per config and, with --overlays, per ablation overlay that changes it, the parameters
of the generator and both discriminators, generator GFLOPs for one image (attention on SDPA's math
backend, the same on every device) and the peak memory of one generator training step at batch 1."""
import argparse
import sys
from pathlib import Path
from typing import Optional

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from xinggan import runtime
from xinggan.bench import harness, report, workloads
from xinggan.config import ConfigError, load_config
from xinggan.models import build_discriminators, build_generator, count_parameters
from xinggan.progress import progress

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = [f"configs/{n}.yaml" for n in ("market", "deepfashion", "market_xingganpp", "deepfashion_xingganpp")]


def cpu_peak_memory(config: str, overlay: Optional[str]) -> dict:
    """Peak RSS and its rise (MB) over one generator training step at batch 1, in a fresh process."""
    res = harness.in_fresh_process(workloads.cpu_peak_rise, [config, *([overlay] if overlay else [])], [], 1, None, False)
    return {"peak_mb": res["peak_kb"] / 1024, "rise_mb": res["rise_kb"] / 1024, "method": res["method"]}


def measure(config: str, overlay: Optional[str], device: torch.device, memory: bool) -> dict:
    """One row: parameters, GFLOPs and (with ``memory``) the training step's peak memory."""
    path = Path(config).resolve()
    row = {"config": str(path.relative_to(REPO)) if REPO in path.parents else path.name,
           "overlay": Path(overlay).name if overlay else None}
    try:
        cfg = load_config([config, *([overlay] if overlay else [])])
        generator, shape_d, appearance_d = build_generator(cfg).to(device), *build_discriminators(cfg)
    except (NotImplementedError, ValueError, ConfigError) as exc:
        return {**row, "error": f"{type(exc).__name__}: {exc}"}
    nets = {"generator": generator, "shape_discriminator": shape_d, "appearance_discriminator": appearance_d}
    row.update(model=cfg.model.name, params={k: count_parameters(v) for k, v in nets.items()})
    b = workloads.model_batch(cfg, 1, device)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        generator.eval()(b["source_image"], b["source_pose"], b["target_pose"])
    row["gflops"] = counter.get_total_flops() / 1e9
    if memory and device.type == "cuda":
        step = workloads.generator_steps(cfg, 1, device, ["off"], False)[1]["off"]
        row["memory"] = {"rise_mb": harness.cuda_peak_gb(step, device) * 1024, "method": "CUDA max allocated"}
    elif memory:
        row["memory"] = cpu_peak_memory(config, overlay)
    return row


def _changes(config: str, overlay: Path) -> bool:
    try:
        return load_config([config, overlay]) != load_config([config])
    except ConfigError:
        return True  # kept: the row shows the error


def rows_to_measure(configs: list, overlays: bool) -> list:
    """(config, overlay) pairs; an overlay that leaves a config unchanged is skipped."""
    ablations = sorted((REPO / "configs" / "ablations").glob("*.yaml")) if overlays else []
    return [(c, o) for c in configs for o in [None, *(str(p) for p in ablations if _changes(c, p))]]


def markdown(rows: list, device: str) -> str:
    lines = [f"Parameters, generator GFLOPs per image (batch 1) and peak memory of one generator training step "
             f"at batch 1 (forward + L1 backward), on {device}.", "",
             "| config | overlay | G params | D_shape params | D_appearance params | G GFLOPs | peak memory (MB) "
             "| rise (MB) |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        name, overlay = Path(row["config"]).stem, Path(row["overlay"]).stem if row["overlay"] else "-"
        if "error" in row:
            lines.append(f"| {name} | {overlay} | not built: {row['error'][:120]} | | | | | |")
            continue
        mem = [f"{row.get('memory', {})[k]:.0f}" if k in row.get("memory", {}) else "-" for k in ("peak_mb", "rise_mb")]
        lines.append(f"| {name} | {overlay} | " + " | ".join(f"{n / 1e6:.3f} M" for n in row["params"].values())
                     + f" | {row['gflops']:.2f} | {' | '.join(mem)} |")
    methods = sorted({row["memory"]["method"] for row in rows if row.get("memory")})
    return "\n".join(lines + (["", "Memory: " + "; ".join(methods) + "."] if methods else [])) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, metavar="YAML")
    p.add_argument("--overlays", action="store_true", help="also every configs/ablations/*.yaml on each config")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-memory", action="store_true", help="skip the training-step memory")
    p.add_argument("--out", default=None, help="output prefix (default runs/benchmarks/model_table)")
    args = p.parse_args(argv)
    try:
        device = runtime.pick_device(args.device)
    except runtime.DeviceError as exc:
        p.error(str(exc))
    configs = [str(REPO / c) if not Path(c).is_file() and (REPO / c).is_file() else c for c in args.configs]
    rows = [measure(c, o, device, not args.no_memory)
            for c, o in progress(rows_to_measure(configs, args.overlays), desc="model table", unit="config")]
    info = {**runtime.machine(device), "cpu_threads": torch.get_num_threads()}
    table = markdown(rows, info.get("gpu", "CPU") if device.type == "cuda" else "CPU")
    print(table)
    out = report.resolve_out(args.out, "model_table")
    print("wrote %s and %s" % report.write_pair(out, {"machine": info, "rows": rows}, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
