#!/usr/bin/env python
"""GPU acceptance run: everything a CUDA machine must show, in one command, within 8 minutes.

    python scripts/gpu_check.py [--dry-run] [--out benchmarks/gpu_check]

Parts, each under its own time limit (a part that overruns is stopped, its whole process group
with it, and reported; the rest still run):

1. ``tests``: the CUDA-only tests (``tests/test_cuda.py``): AMP bf16 and fp16 (grad scaler)
   training steps, which fused SDPA kernel each real attention shape gets, chunked attention
   under autocast, exact resume with deterministic algorithms;
2. ``ddp``: NCCL DistributedDataParallel with ``torchrun --nproc_per_node=2`` and
   ``train.deterministic=true``: a straight run of 4 toy iterations, and a run of 2 iterations
   resumed (``--resume``) to 4; the two final checkpoints must hold the same parameters,
   optimizer states, RNG states and pools, bit for bit.  Skipped ("needs 2 or more GPUs") on
   a machine with fewer GPUs: one process would start no process group at all (CPU DDP is
   covered by the gloo tests of ``tests/test_cluster.py``);
3. ``sdpa``: the fused SDPA kernels PyTorch reports for the attention shapes of the Market and
   DeepFashion generators (q/k width 32, v width 256), fp32 and bf16, with and without grad;
4. ``benchmark``: ``scripts/benchmark.py`` at batch 32, XingGAN and XingGAN++, Market and
   DeepFashion, AMP off and bf16: training-iteration images/s, peak memory, projected hours of
   the full schedule, generator inference images/s.

Writes ``<out>.json`` and ``<out>.md`` (the benchmark's own report goes to
``<out>_benchmark.json`` / ``.md``), rewritten when the run starts and after every part, so a
run stopped from outside still leaves the parts it finished.  A relative ``--out`` is taken
from the repository root, as are every config, script and test path, whatever the current
directory.  Every part runs with ``CUBLAS_WORKSPACE_CONFIG=:4096:8``.  The targets: DeepFashion
XingGAN at batch 32 with bf16 trains in at most 40 GB and its 37,500-iteration schedule projects
to at most 6 h; inference at batch 32 with bf16 reaches 1,000 images/s on Market and 150 on
DeepFashion.

Exit status: 0 when every part passed (or was skipped) and every target was met; 1 when a part
failed or was stopped, or a target was missed or not measured; 2 without CUDA.

``--dry-run`` needs no GPU: it checks that every module and file the run uses is there, and
prints the plan with sizes, paths and time limits.
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
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TOTAL_LIMIT_S = 480
# cuBLAS reads this once, when a process first uses it; deterministic algorithms need it.
PART_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
BENCHMARK = {"datasets": "market,deepfashion", "models": "xinggan,xingganpp", "batches": "32",
             "amp": "off,bf16", "attention": "auto", "repeats": 3, "warmup": 1}
TARGETS = {
    "deepfashion_train_peak_gb": 40.0,       # XingGAN, batch 32, bf16
    "deepfashion_schedule_hours": 6.0,       # 37,500 iterations at batch 32, bf16
    "market_inference_images_per_s": 1000.0,  # batch 32, bf16
    "deepfashion_inference_images_per_s": 150.0,
}
GRIDS = {"market": (32, 16), "deepfashion": (64, 44)}  # feature grids of 128x64 / 256x176
DDP_PROCESSES = 2
DDP_ITERATIONS = 4  # straight; the split run stops at half of it and resumes
DDP_SKIPPED = "skipped: needs 2 or more GPUs"
PASSED = "passed"


def resolve_out(out: str | Path) -> Path:
    """``--out`` as an absolute path: a relative one is taken from the repository root."""
    out = Path(out).expanduser()
    return out if out.is_absolute() else REPO / out


def suffixed(out: Path, suffix: str) -> Path:
    """``out`` with ``suffix`` appended (not replacing a dot already in its name)."""
    return out.with_name(out.name + suffix)


def plan(out: Path) -> list[dict]:
    py = sys.executable
    bench = [py, str(REPO / "scripts" / "benchmark.py"), "--datasets", BENCHMARK["datasets"],
             "--models", BENCHMARK["models"], "--batches", BENCHMARK["batches"],
             "--amp", BENCHMARK["amp"], "--attention", BENCHMARK["attention"],
             "--repeats", str(BENCHMARK["repeats"]), "--warmup", str(BENCHMARK["warmup"]),
             "--no-released", "--out", str(suffixed(out, "_benchmark"))]
    half = DDP_ITERATIONS // 2
    return [
        {"name": "tests", "limit_s": 120, "what": "CUDA-only tests (tests/test_cuda.py)",
         "command": [py, "-m", "pytest", "-q", "-rs", str(REPO / "tests" / "test_cuda.py")]},
        {"name": "ddp", "limit_s": 90,
         "what": f"NCCL DDP, torchrun --nproc_per_node={DDP_PROCESSES}, deterministic: "
                 f"{DDP_ITERATIONS} toy iterations straight vs {half} + resume to "
                 f"{DDP_ITERATIONS}, final checkpoints equal bit for bit ({DDP_SKIPPED} "
                 f"on fewer)", "command": None},
        {"name": "sdpa", "limit_s": 30,
         "what": "fused SDPA kernels for the Market (N 512) and DeepFashion (N 2816) attention, "
                 "q/k 32, v 256, fp32/bf16, grad/no grad", "command": None},
        {"name": "benchmark", "limit_s": 240,
         "what": f"scripts/benchmark.py: datasets {BENCHMARK['datasets']}, models "
                 f"{BENCHMARK['models']}, batch {BENCHMARK['batches']}, amp {BENCHMARK['amp']}, "
                 f"{BENCHMARK['warmup']} warm-up + {BENCHMARK['repeats']} timed runs each",
         "command": bench},
    ]


def dry_run(parts: list[dict], out: Path) -> int:
    problems = []
    for module in ("torch", "torchvision", "xinggan.training", "xinggan.models",
                   "xinggan.ops.attention", "xinggan.precision", "xinggan.runtime"):
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - reported, not raised
            problems.append(f"import {module}: {type(error).__name__}: {error}")
    for path in ("tests/test_cuda.py", "tests/conftest.py", "scripts/benchmark.py", "train.py",
                 "configs/toy.yaml", "configs/market.yaml", "configs/deepfashion.yaml",
                 "configs/market_xingganpp.yaml", "configs/deepfashion_xingganpp.yaml"):
        if not (REPO / path).is_file():
            problems.append(f"missing {path}")
    import torch

    total = sum(p["limit_s"] for p in parts)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    where = f"CUDA: {torch.cuda.get_device_name()} x{gpus}" if gpus else "no CUDA here"
    print(f"gpu_check plan ({where}):")
    print(f"  repository {REPO}")
    print(f"  report     {suffixed(out, '.json')} and {suffixed(out, '.md')}")
    for p in parts:
        print(f"  {p['name']:<10} at most {p['limit_s']:>4} s  {p['what']}")
        if p["command"]:
            print(f"             $ {' '.join(p['command'][1:])}")
        if p["name"] == "ddp":
            for phase, commands in ddp_commands(Path("<tmp>")).items():
                for command in commands:
                    print(f"             {phase + ':':<7} $ {' '.join(command[1:])}")
            if gpus < DDP_PROCESSES:
                print(f"             here: {DDP_SKIPPED} ({gpus} visible)")
    print(f"  total      at most {total:>4} s (limit {TOTAL_LIMIT_S} s)")
    print(f"  environment of every part: "
          + " ".join(f"{k}={v}" for k, v in PART_ENV.items()))
    if total > TOTAL_LIMIT_S:
        problems.append(f"the parts' limits add up to {total} s, over {TOTAL_LIMIT_S} s")
    for line in problems:
        print(f"problem: {line}", file=sys.stderr)
    print("dry run: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


# -- running commands -------------------------------------------------------------------------


def part_env() -> dict:
    return {**os.environ, **PART_ENV}


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the process group of ``proc`` (torchrun and its ranks, the
    loader workers), so nothing of it holds the GPU for the next part."""
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


def run_commands(commands: list[list[str]], limit_s: float,
                 keep_output: bool = False) -> list[dict]:
    """Run ``commands`` at the same time, each in its own process group, from the repository
    root with :data:`PART_ENV`; past ``limit_s`` (counted from the start) whatever still runs
    is stopped.  An exception here (also SIGTERM to this script, see :func:`main`) stops them
    all before it propagates.  Each result: status, seconds, the output's tail (and the whole
    output with ``keep_output``)."""
    start = time.perf_counter()
    running = []
    try:
        for command in commands:
            log = tempfile.TemporaryFile(mode="w+")
            proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True, env=part_env())
            running.append((proc, log))
        results = []
        for proc, log in running:
            try:
                proc.wait(timeout=max(0.01, limit_s - (time.perf_counter() - start)))
                status = PASSED if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            except subprocess.TimeoutExpired:
                _stop_group(proc)
                status = f"stopped after {limit_s:.0f} s"
            log.seek(0)
            output = log.read()
            result = {"status": status, "seconds": round(time.perf_counter() - start, 1),
                      "output_tail": output[-3000:]}
            first = output.find("Traceback (most recent call last)")
            if status != PASSED and 0 <= first < len(output) - 3000:
                # torchrun ends with its own summary: keep the first error as well
                result["first_error"] = output[first:first + 3000]
            if keep_output:
                result["output"] = output
            results.append(result)
        return results
    finally:
        for proc, log in running:
            if proc.poll() is None:
                _stop_group(proc)
            log.close()


def run_command(command: list[str], limit_s: float, keep_output: bool = False) -> dict:
    return run_commands([command], limit_s, keep_output)[0]


# -- the DDP part ---------------------------------------------------------------------------


def ddp_commands(work: Path) -> dict[str, list[list[str]]]:
    """The torchrun commands of the DDP part, by phase: the straight run and the first half of
    the split run start together, then the split run is resumed."""
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={DDP_PROCESSES}", str(REPO / "train.py"),
            "--config", str(REPO / "configs" / "toy.yaml"), "--no-progress"]
    settings = ["--set", f"data.root={work / 'data'}", "data.num_workers=2", "train.device=cuda",
                f"train.batch_size={2 * DDP_PROCESSES}", "train.checkpoint_every=2",
                "train.deterministic=true", "model.generator.dropout=0.5",
                "model.discriminator.dropout=0.5", "loss.pool_size=2"]
    straight = base + ["--run-dir", str(work / "straight")] + settings
    split = base + ["--run-dir", str(work / "split")] + settings
    return {"start": [straight + [f"train.iterations={DDP_ITERATIONS}"],
                      split + [f"train.iterations={DDP_ITERATIONS // 2}"]],
            "resume": [split + [f"train.iterations={DDP_ITERATIONS}", "--resume"]]}


def same_bits(a, b) -> bool:
    """Two tensors with the same dtype, shape and bytes (so -0.0 differs from 0.0, and a NaN
    equals the same NaN)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    a, b = (t.detach().cpu().contiguous().reshape(-1) for t in (a, b))
    if a.dtype.is_floating_point or a.dtype.is_complex:
        import torch

        a, b = a.view(torch.uint8), b.view(torch.uint8)
    return bool((a == b).all()) if a.numel() else True


def differing_tensors(a, b, where: str = "") -> tuple[int, list[str]]:
    """Compare two checkpoint trees (dicts / lists of tensors and plain values): every tensor
    bit for bit.  Returns (tensors compared, places that differ: a tensor with other bits,
    dtype or shape, a key or list entry on one side only, a tensor against a non-tensor).
    Plain values (config, versions, paths) are not compared."""
    import torch

    if torch.is_tensor(a) or torch.is_tensor(b):
        if not (torch.is_tensor(a) and torch.is_tensor(b)):
            return 0, [f"{where or '<root>'}: a tensor on one side only"]
        return 1, ([] if same_bits(a, b) else [where or "<root>"])
    count, diffs = 0, []
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            place = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                diffs.append(f"{place}: on one side only")
                continue
            n, d = differing_tensors(a[key], b[key], place)
            count, diffs = count + n, diffs + d
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            diffs.append(f"{where or '<root>'}: {len(a)} entries against {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            n, d = differing_tensors(x, y, f"{where}[{i}]")
            count, diffs = count + n, diffs + d
    return count, diffs


def compare_checkpoints(path_a: Path, path_b: Path) -> dict:
    import torch

    a = torch.load(path_a, map_location="cpu", weights_only=True)
    b = torch.load(path_b, map_location="cpu", weights_only=True)
    count, diffs = differing_tensors(a, b)
    return {"tensors_compared": count, "differing": diffs[:20], "n_differing": len(diffs),
            "iterations": [a.get("iteration"), b.get("iteration")],
            "world_sizes": [a.get("world_size"), b.get("world_size")],
            "ranks_saved": [len(a.get("ranks", [])), len(b.get("ranks", []))]}


def run_ddp(limit_s: float) -> dict:
    import torch

    gpus = torch.cuda.device_count()
    if gpus < DDP_PROCESSES:
        return {"status": DDP_SKIPPED, "gpus": gpus, "seconds": 0.0}
    from xinggan.prep.toy import make_toy_dataset

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as folder:
        work = Path(folder)
        make_toy_dataset(work / "data", seed=1, identities=4, test_identities=2, poses=3,
                         test_pairs=4, height=64, width=32)
        commands = ddp_commands(work)
        first = run_commands(commands["start"], limit_s * 0.6 - (time.perf_counter() - start))
        result = {"gpus": gpus, "processes": DDP_PROCESSES, "straight": first[0],
                  "split": first[1]}
        if first[1]["status"] == PASSED:
            result["resume"] = run_command(commands["resume"][0],
                                           max(10.0, limit_s - (time.perf_counter() - start)),
                                           keep_output=True)
            # a resume that ignored the checkpoint and trained from scratch would also end
            # equal to the straight run: train.py must say that it resumed
            resumed = "resumed from" in result["resume"].pop("output")
        problems = [f"{name}: {result[name]['status']}" for name in ("straight", "split", "resume")
                    if name in result and result[name]["status"] != PASSED]
        if "resume" in result and not resumed:
            problems.append("resume: the run did not say that it resumed from the checkpoint")
        paths = [work / name / "checkpoints" / "latest.pt" for name in ("straight", "split")]
        if not problems and all(p.is_file() for p in paths):
            found = compare_checkpoints(*paths)
            result["comparison"] = found
            if found["iterations"] != [DDP_ITERATIONS] * 2:
                problems.append(f"final iterations {found['iterations']}, not {DDP_ITERATIONS}")
            if (found["world_sizes"] != [DDP_PROCESSES] * 2
                    or found["ranks_saved"] != [DDP_PROCESSES] * 2):
                problems.append(f"world sizes {found['world_sizes']}, per-rank states "
                                f"{found['ranks_saved']}, not {DDP_PROCESSES} processes")
            if not found["tensors_compared"]:
                problems.append("no tensors in the checkpoints")
            if found["n_differing"]:
                problems.append(f"{found['n_differing']} tensor(s) differ between the straight "
                                f"and the resumed run: {', '.join(found['differing'][:5])}")
        elif not problems:
            problems.append("missing checkpoint(s): "
                            + ", ".join(str(p.relative_to(work)) for p in paths if not p.is_file()))
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["problems"] = problems
    result["status"] = PASSED if not problems else "failed (" + "; ".join(problems)[:300] + ")"
    return result


# -- the SDPA part --------------------------------------------------------------------------


def run_sdpa() -> dict:
    rows, result = [], {}
    try:
        import torch

        from xinggan.config import load_config
        from xinggan.runtime import configure_backends

        train = load_config(REPO / "configs" / "deepfashion.yaml").train  # as training sets them
        result["backends"] = configure_backends(torch.device("cuda"),
                                                deterministic=train.deterministic, tf32=train.tf32)
        _sdpa_rows(rows)
    except Exception as error:  # noqa: BLE001 - e.g. out of memory: reported, the rest runs
        return {**result, "status": f"failed ({type(error).__name__}: {str(error)[:200]})",
                "rows": rows}
    return {**result, "status": PASSED, "rows": rows}


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


# -- targets and report -----------------------------------------------------------------------


def check_targets(report_path: Path) -> list[dict]:
    if not report_path.is_file():
        return [{"target": name, "limit": limit, "status": "not measured"}
                for name, limit in TARGETS.items()]
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


def part_ok(result: dict) -> bool:
    status = str(result.get("status", ""))
    return status == PASSED or status.startswith("skipped")


def failures(report: dict) -> list[str]:
    """Why the run fails: every part that did not pass (or was not skipped) and every target
    not met (missed, or not measured); empty when it passes."""
    out = [f"part {name}: {result.get('status')}" for name, result in report["parts"].items()
           if not part_ok(result)]
    out += [f"target {t['target']}: {t['status']}" for t in report.get("targets", [])
            if t["status"] != "met"]
    return out


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(suffixed(out, ".json"), json.dumps(report, indent=1))
    lines = [f"# GPU check: {report['device']}", "",
             f"Command: `{report['command']}`; {report['seconds']} s "
             f"{'in all' if report.get('finished') else 'so far (not finished)'}.", "",
             "| part | status | seconds |", "|---|---|---|"]
    for name, part in report["parts"].items():
        lines.append(f"| {name} | {part.get('status')} | {part.get('seconds', '')} |")
    lines += ["", "## Targets", "", "| target | limit | measured | status |", "|---|---|---|---|"]
    for t in report.get("targets", []):
        lines.append(f"| {t['target']} | {t.get('limit', '')} | {t.get('value', '')} | {t['status']} |")
    comparison = report["parts"].get("ddp", {}).get("comparison")
    if comparison:
        lines += ["", "## DDP: straight run against resumed run", "",
                  f"{comparison['tensors_compared']} tensors compared bit for bit, "
                  f"{comparison['n_differing']} differ"
                  + (f": {', '.join(comparison['differing'])}" if comparison["differing"] else "")
                  + "."]
    sdpa = report["parts"].get("sdpa", {}).get("rows", [])
    if sdpa:
        lines += ["", "## Fused SDPA kernels (batch 32, one head)", "",
                  "| dataset | N | dtype | grad | kernels |", "|---|---|---|---|---|"]
        for r in sdpa:
            lines.append(f"| {r['dataset']} | {r['n']} | {r['dtype']} | {r['grad']} | "
                         f"{', '.join(r['kernels']) or 'none (auto runs chunked)'} |")
    if report.get("finished"):
        bad = failures(report)
        lines += ["", "Result: " + ("passed" if not bad else "FAILED: " + "; ".join(bad)) + "."]
    lines += ["", f"The benchmark's own tables: `{out.name}_benchmark.md`."]
    _write_atomic(suffixed(out, ".md"), "\n".join(lines) + "\n")


def run_part(part: dict) -> dict:
    if part["name"] == "ddp":
        return run_ddp(part["limit_s"])
    if part["name"] == "sdpa":
        return run_sdpa()
    return run_command(part["command"], part["limit_s"])


def device_report() -> dict | None:
    """The machine's line of the report; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return {"device": torch.cuda.get_device_name(), "gpus": torch.cuda.device_count(),
            "torch": torch.__version__, "cuda": torch.version.cuda}


def _raise_on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise SystemExit(128 + signum)


def run_parts(parts: list[dict], out: Path, report: dict) -> dict:
    """Run ``parts`` in order, rewriting the report when the run starts, when each part starts
    and when it ends.  A part that raises is reported failed and the rest still run; an
    interruption (Ctrl-C, SIGTERM) is reported and re-raised."""
    start = time.perf_counter()
    bench = suffixed(out, "_benchmark.json")

    def save():
        report["targets"] = check_targets(bench)
        report["seconds"] = round(time.perf_counter() - start, 1)
        write_report(out, report)

    report["parts"] = {p["name"]: {"status": "not run yet"} for p in parts}
    report["finished"] = False
    save()
    for part in parts:
        name = part["name"]
        print(f"[{time.perf_counter() - start:6.0f} s] {name}: {part['what']}", flush=True)
        report["parts"][name] = {"status": "running (not finished)"}
        save()
        try:
            result = run_part(part)
        except Exception as error:  # noqa: BLE001 - reported; the next parts still run
            result = {"status": f"failed ({type(error).__name__}: {str(error)[:300]})"}
        except BaseException:
            report["parts"][name] = {"status": "interrupted"}
            save()
            raise
        report["parts"][name] = result
        save()
        print(f"         {name}: {result['status']}", flush=True)
    report["finished"] = True
    save()
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="check the plan and imports, run nothing")
    p.add_argument("--out", default="benchmarks/gpu_check",
                   help="report path without suffix; relative to the repository root")
    args = p.parse_args(argv)
    out = resolve_out(args.out)
    parts = plan(out)
    if args.dry_run:
        return dry_run(parts, out)
    for key, value in PART_ENV.items():  # before this process first uses cuBLAS (sdpa part)
        os.environ[key] = value
    info = device_report()
    if info is None:
        print("error: no CUDA device; use --dry-run to check the plan", file=sys.stderr)
        return 2
    report = {**info, "platform": platform.platform(),
              "command": " ".join(["python"] + (sys.argv if argv is None else
                                                ["scripts/gpu_check.py", *argv])),
              "parts": {}}
    stale = suffixed(out, "_benchmark.json")
    if stale.is_file():  # the targets are read from this run's benchmark rows only
        stale.unlink()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm) if main_thread else None
    try:
        run_parts(parts, out, report)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    print(f"wrote {suffixed(out, '.json')} and {suffixed(out, '.md')}")
    bad = failures(report)
    for line in bad:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
