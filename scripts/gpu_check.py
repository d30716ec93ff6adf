"""GPU acceptance run, one command within 8 minutes on one H100/H200:

    python scripts/gpu_check.py [--dry-run] [--out benchmarks/gpu_check]

1. ``tests``: ``pytest -m cuda tests/test_cuda.py`` (AMP steps, fused attention kernels, exact
   resume, NCCL DDP where there are 2 GPUs or more);
2. ``benchmark``: ``scripts/benchmark.py`` at batch 32, XingGAN and XingGAN++, Market and
   DeepFashion, AMP off and bf16, and its targets (:data:`TARGETS`);
3. ``busy``: 20 steady iterations of Market bf16 at batch 32 under torch.profiler: GPU kernel
   time over wall time.

The report, ``<out>.md`` and ``<out>.json`` (relative paths from the repository root), is rewritten
as each part ends. Exit status 1 on a failed part or a missed (or unmeasured) target, 2 without
CUDA. ``--dry-run`` checks the plan's files and imports and prints it, on any machine.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from xinggan import runtime
from xinggan.bench import harness, report, workloads

REPO = Path(__file__).resolve().parents[1]
TARGETS = {  # name: (limit, higher is better)
    "deepfashion_train_peak_gb": (40.0, False),  # XingGAN, batch 32, bf16, the training iteration
    "deepfashion_schedule_hours": (6.0, False),  # its 37,500 iterations at batch 32
    "market_inference_images_per_s": (1000.0, True),  # generator eval, batch 32, bf16
    "deepfashion_inference_images_per_s": (150.0, True),
    "market_gpu_busy": (0.9, True),  # kernel time / wall time, Market bf16 batch 32
}


def plan(out: Path) -> list:
    """The subprocess parts: (name, time limit in s, command)."""
    bench = ["scripts/benchmark.py", "--datasets", "market,deepfashion", "--models", "xinggan,xingganpp",
             "--batches", "32", "--amp", "off,bf16", "--attention", "auto", "--repeats", "3", "--no-released",
             "--out", f"{out}_benchmark"]
    return [("tests", 150, [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "tests/test_cuda.py"]),
            ("benchmark", 240, [sys.executable, *bench])]


def run(command: list, limit_s: float) -> dict:
    """Run ``command`` from the repository root in its own process group, stopped (with all its
    children) past ``limit_s``."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output = proc.communicate(timeout=limit_s)[0]
        status = "passed" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, status = proc.communicate()[0], f"stopped after {limit_s:.0f} s"
    return {"status": status, "seconds": round(time.perf_counter() - start, 1), "output_tail": output[-3000:]}


def busy(device: torch.device) -> dict:
    """GPU busy fraction over 20 steady Market bf16 iterations at batch 32."""
    cfg = workloads.load("configs/market.yaml")
    runtime.configure_backends(device, deterministic=cfg.train.deterministic, tf32=cfg.train.tf32)
    step = workloads.iteration_steps(cfg, 32, device, ["bf16"])["bf16"]
    return {"status": "passed", **harness.gpu_busy(step, device, iterations=20)}


def check_targets(benchmark_json: Path, busy_part: dict = None) -> list:
    """Each target with its value and status (met, missed, not measured)."""
    rows = json.loads(benchmark_json.read_text())["rows"] if benchmark_json.is_file() else []

    def row(dataset):
        return next((r for r in rows if (r.get("dataset"), r.get("model"), r.get("batch"), r.get("amp"),
                                         r.get("attention")) == (dataset, "xinggan", 32, "bf16", "auto")), {})
    df, mk = row("deepfashion"), row("market")
    values = {"deepfashion_train_peak_gb": df.get("iteration", {}).get("peak_memory_gb"),
              "deepfashion_schedule_hours": df.get("iteration", {}).get("projected", {}).get("hours"),
              "market_inference_images_per_s": mk.get("g_eval", {}).get("images_per_s"),
              "deepfashion_inference_images_per_s": df.get("g_eval", {}).get("images_per_s"),
              "market_gpu_busy": (busy_part or {}).get("busy")}
    out = []
    for name, (limit, higher) in TARGETS.items():
        value = values[name]
        status = "not measured" if value is None else "met" if (value >= limit if higher else value <= limit) \
            else "missed"
        out.append({"target": name, "limit": limit, "value": value, "status": status})
    return out


def write(out: Path, result: dict) -> list:
    """Rewrite the report; the reasons the run fails so far."""
    result["targets"] = check_targets(Path(f"{out}_benchmark.json"), result["parts"].get("busy"))
    bad = [f"part {n}: {p['status']}" for n, p in result["parts"].items() if p["status"] != "passed"]
    bad += [f"target {t['target']}: {t['status']}" for t in result["targets"] if t["status"] != "met"]
    lines = [f"# GPU check: {result['device']}", "", f"Command: `{result['command']}`", "",
             "| part | status | seconds |", "|---|---|---|"]
    lines += [f"| {n} | {p['status']} | {p.get('seconds', '')} |" for n, p in result["parts"].items()]
    lines += ["", "| target | limit | measured | status |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['limit']} | {t['value']} | {t['status']} |" for t in result["targets"]]
    lines += ["", "Result: " + ("FAILED: " + "; ".join(bad) if bad else "passed") + ".",
              "", f"The benchmark's tables: `{out.name}_benchmark.md`."]
    report.write_pair(out, result, "\n".join(lines) + "\n")
    return bad


def dry_run(out: Path) -> int:
    problems = [f"missing {p}" for p in ("tests/test_cuda.py", "scripts/benchmark.py", "configs/market.yaml",
                                         "configs/deepfashion.yaml") if not (REPO / p).is_file()]
    print(f"gpu_check plan (repository {REPO}; report {out}.md and .json):")
    for name, limit, command in plan(out):
        print(f"  {name:<10} at most {limit:>4} s  $ {' '.join(command[1:])}")
    print("  busy       20 Market bf16 iterations at batch 32 under torch.profiler\n  targets    "
          + ", ".join(f"{k} {'>=' if h else '<='} {v}" for k, (v, h) in TARGETS.items()))
    print("\n".join(f"problem: {p}" for p in problems) or "dry run: ok")
    return 1 if problems else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="check the plan and imports, run nothing")
    p.add_argument("--out", default="benchmarks/gpu_check", help="report path without suffix")
    args = p.parse_args(argv)
    out = report.resolve_out(args.out, "gpu_check")
    if args.dry_run:
        return dry_run(out)
    if not torch.cuda.is_available():
        print("error: no CUDA device; --dry-run checks the plan", file=sys.stderr)
        return 2
    Path(f"{out}_benchmark.json").unlink(missing_ok=True)  # targets come from this run only
    result = {"device": torch.cuda.get_device_name(), "gpus": torch.cuda.device_count(), "torch": torch.__version__,
              "command": "python scripts/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "parts": {}}
    for name, limit, command in plan(out):
        result["parts"][name] = run(command, limit)
        write(out, result)
    try:
        result["parts"]["busy"] = busy(torch.device("cuda"))
    except (RuntimeError, MemoryError) as exc:
        result["parts"]["busy"] = {"status": f"failed ({type(exc).__name__}: {str(exc)[:200]})"}
    bad = write(out, result)
    print("\n".join(f"FAILED {line}" for line in bad) or "passed", f"\nwrote {out}.md and {out}.json")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
