"""Benchmark suite: generator throughput, training-iteration cost and peak memory.

    python scripts/benchmark.py [--quick] [--datasets market,deepfashion]
                                [--models xinggan,xingganpp] [--batches 1,8] [--repeats 7]
                                [--threads 2] [--out benchmarks/benchmark]

Measured on whatever device is present (CUDA if available, else CPU with ``--threads``
threads).  For each dataset x model x batch it records, each as the median and spread
(min, max) of ``--repeats`` runs after a warm-up run:

- ``g_eval``: generator forward in eval mode (seconds, images/s);
- ``g_train``: generator forward + backward of an L1 loss in train mode, the setting of the
  reference cost table (``XINGGAN.md``, Cost);
- ``iteration``: one full training iteration (G step + both D steps + losses);
- ``peak_memory``: CUDA max allocated during ``g_train`` on GPU; on CPU the rise of the peak
  resident set size of a fresh subprocess running one ``g_train`` step;
- every attention implementation (``sdpa``, ``chunked``, ``reference``) for ``g_train``;
- on GPU, AMP off / bf16 for ``g_eval``, ``g_train`` and ``iteration``.

Results go to ``<out>.json`` and ``<out>.md`` with the machine, versions and commit.
``--quick`` runs a reduced matrix (Market, batch 1, 2 repeats) in a couple of minutes on CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xinggan.config import load_config  # noqa: E402

CONFIGS = {
    ("market", "xinggan"): "configs/market.yaml",
    ("deepfashion", "xinggan"): "configs/deepfashion.yaml",
    ("market", "xingganpp"): "configs/market_xingganpp.yaml",
    ("deepfashion", "xingganpp"): "configs/deepfashion_xingganpp.yaml",
}

# The reference code's cost (XINGGAN.md, Cost: CPU, 2 threads, median of 7 runs).
REFERENCE_CPU = {
    ("market", 1): {"g_eval": 0.238, "g_train": 0.850, "peak_gb": 0.50},
    ("market", 8): {"g_eval": 1.84, "g_train": 6.13, "peak_gb": 2.5},
    ("deepfashion", 1): {"g_eval": 1.71, "g_train": 6.22, "peak_gb": 2.5},
    ("deepfashion", 8): {"g_eval": 16.1, "g_train": 69.6, "peak_gb": 15.1},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int, warmup: int = 1) -> dict:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs": len(times)}


def inputs(cfg, batch: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    h, w = cfg.data.height, cfg.data.width
    image = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    pose = torch.rand(batch, 18, h, w, generator=g)
    pose2 = torch.rand(batch, 18, h, w, generator=g)
    target = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    return [t.to(device) for t in (image, pose, pose2, target)]


def load(path: str, overrides: list[str]):
    return load_config(REPO / path, overrides)


def bench_generator(cfg, batch: int, device: torch.device, repeats: int, amp: str) -> dict:
    from xinggan.models import build_generator

    torch.manual_seed(0)
    generator = build_generator(cfg).to(device)
    image, pose, pose2, target = inputs(cfg, batch, device)
    dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]

    def ctx():
        if dtype is None:
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=dtype)

    def eval_step():
        with torch.no_grad(), ctx():
            generator(image, pose, pose2)

    def train_step():
        generator.zero_grad(set_to_none=True)
        with ctx():
            out = generator(image, pose, pose2)
        (out.float() - target).abs().mean().backward()

    generator.eval()
    ev = timed(eval_step, device, repeats)
    generator.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    tr = timed(train_step, device, repeats)
    out = {"g_eval": {**ev, "images_per_s": batch / ev["median_s"]},
           "g_train": {**tr, "images_per_s": batch / tr["median_s"]}}
    if device.type == "cuda":
        out["peak_memory_gb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**30
    return out


def bench_iteration(cfg, batch: int, device: torch.device, repeats: int, amp: str) -> dict:
    from xinggan.training import Trainer

    overrides = [f"train.batch_size={batch}", f"train.amp={amp}", "loss.vgg_weights=random",
                 f"train.device={device}"]
    cfg = cfg.replace(*overrides)
    trainer = Trainer(cfg, "/nonexistent-benchmark-run", device=device, progress=False,
                      tensorboard=False)
    image, pose, pose2, target = inputs(cfg, batch, device)
    batch_dict = {"source_image": image, "source_pose": pose, "target_pose": pose2,
                  "target_image": target}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    res = timed(lambda: trainer.train_step(batch_dict), device, repeats)
    res["images_per_s"] = batch / res["median_s"]
    if device.type == "cuda":
        res["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return res


def cpu_peak_rise(config: str, overrides: list[str], batch: int, threads: int) -> float:
    """Peak RSS rise (GB) of one G forward+backward in a fresh subprocess."""
    code = f"""
import resource, sys, torch
sys.path.insert(0, {str(REPO)!r})
torch.set_num_threads({threads})
from xinggan.config import load_config
from xinggan.models import build_generator
cfg = load_config({str(REPO / config)!r}, {overrides!r})
g = build_generator(cfg).train()
h, w = cfg.data.height, cfg.data.width
x = torch.rand({batch}, 3, h, w) * 2 - 1; p = torch.rand({batch}, 18, h, w); t = torch.rand({batch}, 3, h, w)
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize()
base = rss()
before_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out = g(x, p, p); (out - t).abs().mean().backward()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(max(peak, before_peak) - base)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(res.stdout.strip().splitlines()[-1]) / 2**30


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": str(torch.__version__),
            "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                        capture_output=True, text=True).stdout.strip()
    except OSError:
        info["commit"] = "unknown"
    return info


def markdown(results: dict) -> str:
    m = results["machine"]
    where = m.get("gpu") or f"{m['cpu']}, {m['torch_threads']} threads"
    lines = [f"# Benchmark ({where}; torch {m['torch']}; commit {m['commit']})", "",
             "Median of the repeated runs after a warm-up (min-max in brackets).", "",
             "| dataset | model | batch | amp | attention | G eval s (img/s) | G fwd+bwd s (img/s) "
             "| iteration s (img/s) | peak memory GB | reference eval / fwd+bwd / peak |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        def cell(key):
            v = r.get(key)
            if not v:
                return "-"
            return (f"{v['median_s']:.3f} [{v['min_s']:.3f}-{v['max_s']:.3f}] "
                    f"({v['images_per_s']:.1f})")
        ref = r.get("reference")
        ref_cell = f"{ref['g_eval']} / {ref['g_train']} / {ref['peak_gb']}" if ref else "-"
        peak = r.get("peak_memory_gb")
        lines.append(f"| {r['dataset']} | {r['model']} | {r['batch']} | {r['amp']} | "
                     f"{r['attention']} | {cell('g_eval')} | {cell('g_train')} | "
                     f"{cell('iteration')} | {'-' if peak is None else f'{peak:.2f}'} | {ref_cell} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--datasets", default="market,deepfashion")
    p.add_argument("--models", default="xinggan,xingganpp")
    p.add_argument("--batches", default=None, help="default 1,8 on CPU, 1,32 on GPU")
    p.add_argument("--attention", default=None,
                   help="attention implementations to time (default: all three on the first batch)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-iteration", action="store_true", help="skip the full training iteration")
    p.add_argument("--no-memory", action="store_true", help="skip the CPU peak-memory subprocess")
    p.add_argument("--out", default="benchmarks/benchmark")
    args = p.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    datasets = args.datasets.split(",")
    models = args.models.split(",")
    batches = [int(b) for b in (args.batches or ("1,32" if device.type == "cuda" else "1,8")).split(",")]
    impls = (args.attention or "sdpa,chunked,reference").split(",")
    repeats = args.repeats
    amps = ["off", "bf16"] if device.type == "cuda" else ["off"]
    overrides_base: list[str] = []
    if args.quick:
        datasets, models, batches, repeats = ["market"], ["xinggan"], [1], 2
        impls = ["sdpa", "chunked"]
    rows = []
    from tqdm import tqdm

    plan = []
    for ds in datasets:
        for model in models:
            for bi, batch in enumerate(batches):
                for amp in amps:
                    for impl in (impls if bi == 0 and amp == "off" else ["sdpa"]):
                        plan.append((ds, model, batch, amp, impl))
    for ds, model, batch, amp, impl in tqdm(plan, desc="benchmark", unit="setting"):
        config = CONFIGS[(ds, model)]
        overrides = overrides_base + [f"model.generator.attention_impl={impl}"]
        cfg = load(config, overrides)
        row = {"dataset": ds, "model": model, "batch": batch, "amp": amp, "attention": impl,
               "config": config}
        try:
            row.update(bench_generator(cfg, batch, device, repeats, amp))
            if not args.no_iteration and impl == "sdpa":
                row["iteration"] = bench_iteration(cfg, batch, device, max(1, repeats // 2), amp)
            if device.type == "cpu" and not args.no_memory:
                row["peak_memory_gb"] = cpu_peak_rise(config, overrides, batch, args.threads)
        except (RuntimeError, MemoryError) as exc:  # e.g. out of memory: record and go on
            row["error"] = str(exc).splitlines()[0][:200]
        if device.type == "cpu" and model == "xinggan" and amp == "off":
            row["reference"] = REFERENCE_CPU.get((ds, batch))
        rows.append(row)
        tqdm.write(json.dumps({k: (v["median_s"] if isinstance(v, dict) and "median_s" in v else v)
                               for k, v in row.items() if k != "reference"}))
    results = {"machine": machine(), "device": str(device), "quick": args.quick,
               "repeats": repeats, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
