#!/usr/bin/env python
"""GPU acceptance run: everything a CUDA machine must show, in one command, within 8 minutes.

    python scripts/gpu_check.py [--dry-run] [--out benchmarks/gpu_check]

Parts, each under its own time limit (a part that overruns is stopped and reported, and the
rest still run):

1. ``tests``: the CUDA-only tests (``tests/test_cuda.py``): AMP bf16 and fp16 (grad scaler)
   training steps, which fused SDPA kernel each real attention shape gets, chunked attention
   under autocast, exact resume with deterministic algorithms;
2. ``ddp``: NCCL DistributedDataParallel with ``torchrun`` on every visible GPU: a few toy
   iterations, then a resume;
3. ``sdpa``: the fused SDPA kernels PyTorch reports for the attention shapes of the Market and
   DeepFashion generators (q/k width 32, v width 256), fp32 and bf16, with and without grad;
4. ``benchmark``: ``scripts/benchmark.py`` at batch 32, XingGAN and XingGAN++, Market and
   DeepFashion, AMP off and bf16: training-iteration images/s, peak memory, projected hours of
   the full schedule, generator inference images/s.

Writes ``<out>.json`` and ``<out>.md`` (the benchmark's own report goes to
``<out>_benchmark.json`` / ``.md``), checking the targets: DeepFashion XingGAN at batch 32 with
bf16 trains in at most 40 GB and its 37,500-iteration schedule projects to at most 6 h;
inference at batch 32 with bf16 reaches 1,000 images/s on Market and 150 on DeepFashion.

``--dry-run`` needs no GPU: it checks that every module and file the run uses is there, and
prints the plan with sizes and time limits.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOTAL_LIMIT_S = 480
BENCHMARK = {"datasets": "market,deepfashion", "models": "xinggan,xingganpp", "batches": "32",
             "amp": "off,bf16", "attention": "auto", "repeats": 3, "warmup": 1}
TARGETS = {
    "deepfashion_train_peak_gb": 40.0,       # XingGAN, batch 32, bf16
    "deepfashion_schedule_hours": 6.0,       # 37,500 iterations at batch 32, bf16
    "market_inference_images_per_s": 1000.0,  # batch 32, bf16
    "deepfashion_inference_images_per_s": 150.0,
}
GRIDS = {"market": (32, 16), "deepfashion": (64, 44)}  # feature grids of 128x64 / 256x176


def plan(out: str) -> list[dict]:
    py = sys.executable
    bench = [py, "scripts/benchmark.py", "--datasets", BENCHMARK["datasets"],
             "--models", BENCHMARK["models"], "--batches", BENCHMARK["batches"],
             "--amp", BENCHMARK["amp"], "--attention", BENCHMARK["attention"],
             "--repeats", str(BENCHMARK["repeats"]), "--warmup", str(BENCHMARK["warmup"]),
             "--no-released", "--out", f"{out}_benchmark"]
    return [
        {"name": "tests", "limit_s": 120, "what": "CUDA-only tests (tests/test_cuda.py)",
         "command": [py, "-m", "pytest", "-q", "-rs", "tests/test_cuda.py"]},
        {"name": "ddp", "limit_s": 90,
         "what": "NCCL DDP with torchrun on every visible GPU: 4 toy iterations, resume to 6",
         "command": None},
        {"name": "sdpa", "limit_s": 30,
         "what": "fused SDPA kernels for the Market (N 512) and DeepFashion (N 2816) attention, "
                 "q/k 32, v 256, fp32/bf16, grad/no grad", "command": None},
        {"name": "benchmark", "limit_s": 240,
         "what": f"scripts/benchmark.py: datasets {BENCHMARK['datasets']}, models "
                 f"{BENCHMARK['models']}, batch {BENCHMARK['batches']}, amp {BENCHMARK['amp']}, "
                 f"{BENCHMARK['warmup']} warm-up + {BENCHMARK['repeats']} timed runs each",
         "command": bench},
    ]


def dry_run(parts: list[dict]) -> int:
    problems = []
    for module in ("torch", "torchvision", "xinggan.training", "xinggan.models",
                   "xinggan.ops.attention", "xinggan.precision"):
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - reported, not raised
            problems.append(f"import {module}: {type(error).__name__}: {error}")
    for path in ("tests/test_cuda.py", "scripts/benchmark.py", "train.py", "configs/toy.yaml",
                 "configs/market.yaml", "configs/deepfashion.yaml",
                 "configs/market_xingganpp.yaml", "configs/deepfashion_xingganpp.yaml"):
        if not (REPO / path).is_file():
            problems.append(f"missing {path}")
    import torch

    total = sum(p["limit_s"] for p in parts)
    print(f"gpu_check plan ({'CUDA: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA here'}):")
    for p in parts:
        print(f"  {p['name']:<10} at most {p['limit_s']:>4} s  {p['what']}")
        if p["command"]:
            print(f"             $ {' '.join(p['command'][1:])}")
    print(f"  total      at most {total:>4} s (limit {TOTAL_LIMIT_S} s)")
    if total > TOTAL_LIMIT_S:
        problems.append(f"the parts' limits add up to {total} s, over {TOTAL_LIMIT_S} s")
    for line in problems:
        print(f"problem: {line}", file=sys.stderr)
    print("dry run: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def run_command(command: list[str], limit_s: int) -> dict:
    """Run ``command`` in its own process group; past ``limit_s`` the whole group (torchrun and
    its ranks included) is stopped, so nothing of it holds the GPU for the next part."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=limit_s)
        status = "passed" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=20)
                break
            except subprocess.TimeoutExpired:
                continue
        output, _ = proc.communicate()
        status = f"stopped after {limit_s} s"
    return {"status": status, "seconds": round(time.perf_counter() - start, 1),
            "output_tail": (output or "")[-3000:]}


def run_ddp(limit_s: int) -> dict:
    import torch

    from xinggan.checkpoint import load_checkpoint
    from xinggan.data.toy import make_toy_dataset

    n = torch.cuda.device_count()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as folder:
        work = Path(folder)
        make_toy_dataset(work / "data", seed=1, identities=4, test_identities=2, poses=3,
                         test_pairs=4, height=64, width=32)
        base = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={n}", "train.py", "--config", "configs/toy.yaml",
                "--run-dir", str(work / "run"), "--no-progress", "--set",
                f"data.root={work / 'data'}", "data.num_workers=2", "train.device=cuda",
                f"train.batch_size={2 * n}", "train.checkpoint_every=2",
                "model.generator.dropout=0.5", "loss.pool_size=2"]
        start = time.perf_counter()
        first = run_command(base + ["train.iterations=4"], limit_s // 2)
        second = run_command(base + ["train.iterations=6", "--resume"],
                             max(10, limit_s - int(time.perf_counter() - start)))
        result = {"gpus": n, "first": first, "resume": second,
                  "seconds": round(time.perf_counter() - start, 1)}
        ckpt = work / "run" / "checkpoints" / "latest.pt"
        if ckpt.is_file():
            state = load_checkpoint(ckpt)
            result["iteration"] = state["iteration"]
            result["ranks_saved"] = len(state.get("ranks", []))
    ok = (first["status"] == second["status"] == "passed" and result.get("iteration") == 6
          and result.get("ranks_saved") == n)
    result["status"] = "passed" if ok else "failed"
    return result


def run_sdpa() -> dict:
    rows = []
    try:
        _sdpa_rows(rows)
    except Exception as error:  # noqa: BLE001 - e.g. out of memory: reported, the rest runs
        return {"status": f"failed ({type(error).__name__}: {str(error)[:200]})", "rows": rows}
    return {"status": "passed", "rows": rows}


def _sdpa_rows(rows: list) -> None:
    import torch

    from xinggan.ops.attention import sdpa_kernels

    for dataset, (h, w) in GRIDS.items():
        for dtype in (torch.float32, torch.bfloat16):
            for grad in (False, True):
                q, k = (torch.randn(32, 1, h * w, 32, device="cuda", dtype=dtype,
                                    requires_grad=grad) for _ in range(2))
                v = torch.randn(32, 1, h * w, 256, device="cuda", dtype=dtype, requires_grad=grad)
                with torch.set_grad_enabled(grad):
                    found = sdpa_kernels(q, k, v)
                rows.append({"dataset": dataset, "n": h * w, "dtype": str(dtype), "grad": grad,
                             "kernels": [name for name, ok in found.items() if ok]})


def check_targets(report_path: Path) -> list[dict]:
    if not report_path.is_file():
        return [{"target": name, "status": "not measured"} for name in TARGETS]
    rows = json.loads(report_path.read_text()).get("rows", [])

    def find(dataset, model, amp):
        for row in rows:
            if (row.get("dataset"), row.get("model"), row.get("batch"), row.get("amp", "off"),
                    row.get("attention", "auto")) == (dataset, model, 32, amp, "auto"):
                return row
        return None

    out = []
    df = find("deepfashion", "xinggan", "bf16")
    mk = find("market", "xinggan", "bf16")

    def add(name, value, limit, higher_is_better):
        if value is None:
            out.append({"target": name, "limit": limit, "status": "not measured"})
            return
        ok = value >= limit if higher_is_better else value <= limit
        out.append({"target": name, "limit": limit, "value": round(value, 3),
                    "status": "met" if ok else "missed"})

    def get(row, *keys):
        for key in keys:
            if row is None or not isinstance(row, dict):
                return None
            row = row.get(key)
        return row

    add("deepfashion_train_peak_gb", get(df, "iteration", "peak_memory_gb"),
        TARGETS["deepfashion_train_peak_gb"], False)
    add("deepfashion_schedule_hours", get(df, "iteration", "projected", "hours"),
        TARGETS["deepfashion_schedule_hours"], False)
    add("market_inference_images_per_s", get(mk, "g_eval", "images_per_s"),
        TARGETS["market_inference_images_per_s"], True)
    add("deepfashion_inference_images_per_s", get(df, "g_eval", "images_per_s"),
        TARGETS["deepfashion_inference_images_per_s"], True)
    return out


def write_report(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = [f"# GPU check: {report['device']}", "",
             f"Command: `{report['command']}`; {report['seconds']} s in all.", "",
             "| part | status | seconds |", "|---|---|---|"]
    for name, part in report["parts"].items():
        lines.append(f"| {name} | {part.get('status')} | {part.get('seconds', '')} |")
    lines += ["", "## Targets", "", "| target | limit | measured | status |", "|---|---|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {t.get('limit', '')} | {t.get('value', '')} | {t['status']} |")
    sdpa = report["parts"].get("sdpa", {}).get("rows", [])
    if sdpa:
        lines += ["", "## Fused SDPA kernels (batch 32, one head)", "",
                  "| dataset | N | dtype | grad | kernels |", "|---|---|---|---|---|"]
        for r in sdpa:
            lines.append(f"| {r['dataset']} | {r['n']} | {r['dtype']} | {r['grad']} | "
                         f"{', '.join(r['kernels']) or 'none (auto runs chunked)'} |")
    lines += ["", f"The benchmark's own tables: `{out.name}_benchmark.md`."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="check the plan and imports, run nothing")
    p.add_argument("--out", default="benchmarks/gpu_check")
    args = p.parse_args(argv)
    parts = plan(args.out)
    if args.dry_run:
        return dry_run(parts)
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA device; use --dry-run to check the plan", file=sys.stderr)
        return 2
    start = time.perf_counter()
    report = {"device": torch.cuda.get_device_name(), "gpus": torch.cuda.device_count(),
              "torch": torch.__version__, "cuda": torch.version.cuda,
              "platform": platform.platform(), "command": " ".join(["python"] + sys.argv),
              "parts": {}}
    limits = {part["name"]: part["limit_s"] for part in parts}
    stale = Path(f"{args.out}_benchmark.json")
    if stale.is_file():  # the targets are read from this run's benchmark rows only
        stale.unlink()
    for part in parts:
        name = part["name"]
        print(f"[{time.perf_counter() - start:6.0f} s] {name}: {part['what']}", flush=True)
        if name == "ddp":
            result = run_ddp(limits[name])
        elif name == "sdpa":
            result = run_sdpa()
        else:
            result = run_command(part["command"], limits[name])
        report["parts"][name] = result
        print(f"         {name}: {result['status']}", flush=True)
    report["targets"] = check_targets(Path(f"{args.out}_benchmark.json"))
    report["seconds"] = round(time.perf_counter() - start, 1)
    write_report(Path(args.out), report)
    print(f"wrote {args.out}.json and {args.out}.md")
    failed = [n for n, r in report["parts"].items() if r["status"] != "passed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
