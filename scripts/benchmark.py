"""Benchmark suite: generator throughput, training-iteration cost and peak memory.

    python scripts/benchmark.py [--quick] [--datasets market,deepfashion]
                                [--models xinggan,xingganpp] [--batches 1,8] [--repeats 7]
                                [--threads 2] [--out benchmarks/benchmark]

Measured on whatever device is present (CUDA if available, else CPU with ``--threads``
threads and denormals flushed to zero, as ``train.py`` runs).  For each dataset x model x batch it records, each as the median and spread
(min, max) of ``--repeats`` runs after a warm-up run:

- ``g_eval``: generator forward in eval mode (seconds, images/s);
- ``g_train``: generator forward + backward of an L1 loss in train mode, the setting of the
  reference cost table (``XINGGAN.md``, Cost);
- ``iteration``: one full training iteration (G step + both D steps + losses), with its CUDA
  peak memory, and, at the config's own batch size, the projected hours of the config's whole
  schedule (``train.iterations``: 37,500 for DeepFashion, 87,500 for Market);
- ``peak_memory``: CUDA max allocated during ``g_train`` on GPU; on CPU the rise of the peak
  resident set size over one ``g_train`` step, in a fresh subprocess whose high-water mark
  (``VmHWM``) is reset through ``/proc/self/clear_refs`` just before the step, so that building
  the model does not count;
- ``released`` (XingGAN rows): the same ``g_eval``, ``g_train`` and peak memory for the literal
  released forward pass (:mod:`xinggan.official.released`: functional ops, N x N attention maps
  materialised) on the same weights and inputs, timed by the same loop on the same machine,
  its runs interleaved with ours (ours, released, ours, ...) so that a drifting machine speed
  affects both alike: the side-by-side reference;
- every attention implementation (``auto`` as configured, plus ``sdpa``/``chunked`` and
  ``reference``) on the first batch size;
- on GPU, AMP off / bf16 for ``g_eval``, ``g_train`` and ``iteration``, and for ``auto``
  which fused SDPA kernels PyTorch reported for each attention shape (``auto`` runs ``chunked``
  where there is none, rather than SDPA's math path with its N x N maps).

Results go to ``<out>.json`` and ``<out>.md`` with the machine, versions and commit.
``--quick`` runs a reduced matrix (Market, batch 1, 2 repeats) in a couple of minutes on CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xinggan.config import load_config  # noqa: E402
from xinggan.memory import measure_in_fresh_process, release_freed_memory  # noqa: E402

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


def timed_interleaved(fns: dict, device: torch.device, repeats: int, warmup: int = 1) -> dict:
    """Like :func:`timed` for several callables, run in turn (a, b, a, b, ...), so that a
    machine whose speed drifts (a shared or throttled host) affects them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                   "runs": len(t)} for name, t in times.items()}


def bench_generator(cfg, batch: int, device: torch.device, repeats: int, amp: str,
                    released: bool = False) -> dict:
    """``g_eval`` and ``g_train`` of our generator; with ``released``, the literal released
    forward pass on the same weights and inputs too, interleaved with ours."""
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

    evals, trains = {"ours": eval_step}, {"ours": train_step}
    if released:
        sd = official_weights(cfg, device)
        params = [v for v in sd.values() if v.requires_grad]
        rel_eval, rel_train = released_step(cfg, sd, False), released_step(cfg, sd, True)

        def released_eval():
            with torch.no_grad():
                rel_eval(image, pose, pose2)

        def released_train():
            for p in params:
                p.grad = None
            (rel_train(image, pose, pose2) - target).abs().mean().backward()

        evals["released"], trains["released"] = released_eval, released_train

    generator.eval()
    ev = timed_interleaved(evals, device, repeats)
    generator.train()
    tr = timed_interleaved(trains, device, repeats)
    out = {"g_eval": {**ev["ours"], "images_per_s": batch / ev["ours"]["median_s"]},
           "g_train": {**tr["ours"], "images_per_s": batch / tr["ours"]["median_s"]}}
    if released:
        out["released"] = {
            "g_eval": {**ev["released"], "images_per_s": batch / ev["released"]["median_s"]},
            "g_train": {**tr["released"], "images_per_s": batch / tr["released"]["median_s"]}}
    if device.type == "cuda":  # one more step of ours alone for its peak
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        train_step()
        torch.cuda.synchronize(device)
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


def schedule_projection(cfg, batch: int, seconds_per_iteration: float) -> dict | None:
    """Hours for the config's whole schedule (``train.iterations``) at this iteration time,
    only when ``batch`` is the config's own batch size (the paper's: 32)."""
    if batch != cfg.train.batch_size:
        return None
    return {"iterations": cfg.train.iterations,
            "hours": seconds_per_iteration * cfg.train.iterations / 3600}


def sdpa_kernel_report() -> list:
    """What ``attention_impl: auto`` found on CUDA since the last call: for each attention
    shape and dtype, the fused SDPA kernels PyTorch would run (none: it used ``chunked``)."""
    from xinggan.ops import attention

    found = [{"device": key[0], "dtype": key[1], "q": list(key[2]), "k": list(key[3]),
              "v": list(key[4]), "grad": key[5],
              "kernels": [name for name, ok in kernels.items() if ok]}
             for key, kernels in attention.SDPA_KERNELS.items()]
    attention.SDPA_KERNELS.clear()
    return found


def official_weights(cfg, device: torch.device) -> dict:
    """Our generator's initial weights (seed 0) under the released key names; parameters
    require grad, buffers do not."""
    from xinggan.models import build_generator
    from xinggan.official.convert import to_official_state_dict

    torch.manual_seed(0)
    generator = build_generator(cfg)
    params = set(to_official_state_dict("generator", dict(generator.named_parameters())))
    return {k: v.detach().clone().to(device).requires_grad_(k in params)
            for k, v in to_official_state_dict("generator", generator.state_dict()).items()}


def released_step(cfg, sd: dict, training: bool):
    """A callable running the released forward (and, in training, the L1 backward)."""
    from xinggan.official.released import released_generator_forward

    gen = cfg.model.generator

    def forward(image, pose, pose2):
        return released_generator_forward(sd, image, pose, pose2, cfg.model.norm,
                                          n_blocks=gen.n_blocks, n_images=gen.num_candidates,
                                          training=training, dropout=gen.dropout)
    return forward


def memory_child(config: str, overrides: list[str], batch: int, released: bool) -> dict:
    """In a fresh process: the peak-RSS rise over one G forward + L1 backward (train mode)."""
    from xinggan.models import build_generator

    cfg = load(config, overrides)
    image, pose, pose2, target = inputs(cfg, batch, torch.device("cpu"))
    if released:
        sd = official_weights(cfg, torch.device("cpu"))
        forward = released_step(cfg, sd, True)
    else:
        torch.manual_seed(0)
        forward = build_generator(cfg).train()
    from xinggan.memory import peak_rss_over

    def step():
        (forward(image, pose, pose2) - target).abs().mean().backward()

    res = peak_rss_over(step)
    return {"rise_gb": res["rise_kb"] / 2**20, "method": res["method"]}


def cpu_peak_rise(config: str, overrides: list[str], batch: int, threads: int,
                  released: bool = False) -> dict:
    """``memory_child`` in a fresh subprocess (so that nothing earlier inflates the peak)."""
    args = ["--memory-child", config, str(batch), "released" if released else "ours",
            "--threads", str(threads)]
    for o in overrides:
        args += ["--set", o]
    return measure_in_fresh_process(Path(__file__).resolve(), args)


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


def _cell(v) -> str:
    if not v:
        return "-"
    return (f"{v['median_s']:.3f} [{v['min_s']:.3f}-{v['max_s']:.3f}] "
            f"({v['images_per_s']:.2f})")


def markdown(results: dict) -> str:
    m = results["machine"]
    where = m.get("gpu") or f"{m['cpu']}, {m['torch_threads']} threads"
    lines = [f"# Benchmark ({where}; torch {m['torch']}; commit {m['commit']})", "",
             f"Command: `{results.get('command', '')}`", "",
             *(["**Incomplete: the run stopped before the end of its plan.**", ""]
               if results.get("complete") is False else []),
             "Seconds per call, median of the repeated runs after a warm-up, [min-max], "
             "(images/s). Peak memory: " + results.get("memory_method", "-") + ".", "",
             "| dataset | model | batch | amp | attention | G eval | G fwd+bwd "
             "| iteration (G + both D) | peak memory GB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        peak = r.get("peak_memory_gb")
        err = "".join(f" {key.replace('_', ' ')}: {r[key]}" for key in ("error", "memory_error")
                      if r.get(key))
        lines.append(f"| {r['dataset']} | {r['model']} | {r['batch']} | {r['amp']} | "
                     f"{r['attention']} | {_cell(r.get('g_eval'))} | {_cell(r.get('g_train'))} | "
                     f"{_cell(r.get('iteration'))} | {'-' if peak is None else f'{peak:.2f}'} "
                     f"|{err}")
    projected = [r for r in results["rows"] if (r.get("iteration") or {}).get("projected")]
    if projected:
        lines += ["", "## Full training schedule at the config's batch size", "",
                  "| dataset | model | batch | amp | s / iteration | images/s | iteration peak GB "
                  "| iterations | projected hours |", "|---|---|---|---|---|---|---|---|---|"]
        for r in projected:
            it = r["iteration"]
            peak = it.get("peak_memory_gb")
            lines.append(f"| {r['dataset']} | {r['model']} | {r['batch']} | {r['amp']} | "
                         f"{it['median_s']:.3f} | {it['images_per_s']:.1f} | "
                         f"{'-' if peak is None else f'{peak:.1f}'} | "
                         f"{it['projected']['iterations']} | {it['projected']['hours']:.1f} |")
    kernels = [(r, k) for r in results["rows"] for k in r.get("sdpa_kernels", [])]
    if kernels:
        lines += ["", "## Fused SDPA kernels that `attention_impl: auto` found (CUDA)", "",
                  "| dataset | model | batch | amp | q / k / v shape | dtype | grad | kernels |",
                  "|---|---|---|---|---|---|---|---|"]
        for r, k in kernels:
            lines.append(f"| {r['dataset']} | {r['model']} | {r['batch']} | {r['amp']} | "
                         f"{k['q']} / {k['k']} / {k['v']} | {k['dtype']} | {k['grad']} | "
                         f"{', '.join(k['kernels']) or 'none: chunked'} |")
    side = [r for r in results["rows"] if r.get("released")]
    if side:
        lines += ["", "## Side by side with the released forward pass (XingGAN, same machine)",
                  "",
                  "`released`: the literal released forward (`xinggan/official/released.py`, N x N "
                  "maps materialised) on the same weights and inputs, timed by the same loop. "
                  "`XINGGAN.md`: the reference table of the spec, for comparison.", "",
                  "| dataset | batch | attention | G eval ours / released s | G fwd+bwd ours / "
                  "released s | peak GB ours / released | XINGGAN.md eval / fwd+bwd / peak |",
                  "|---|---|---|---|---|---|---|"]
        for r in side:
            rel = r["released"]

            def pair(key):
                a, b = r.get(key), rel.get(key)
                if not a or not b:
                    return "-"
                return (f"{a['median_s']:.3f} / {b['median_s']:.3f} "
                        f"(x{b['median_s'] / a['median_s']:.2f})")
            pa, pb = r.get("peak_memory_gb"), rel.get("peak_memory_gb")
            peak = "-" if pa is None or pb is None else f"{pa:.2f} / {pb:.2f}"
            ref = r.get("reference")
            ref_cell = f"{ref['g_eval']} / {ref['g_train']} / {ref['peak_gb']}" if ref else "-"
            lines.append(f"| {r['dataset']} | {r['batch']} | {r['attention']} | {pair('g_eval')} "
                         f"| {pair('g_train')} | {peak} | {ref_cell} |")
        lines += ["", "(xN: how many times faster ours is; > 1 means ours is faster.)"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--memory-child"]:
        c = argparse.ArgumentParser()
        c.add_argument("config")
        c.add_argument("batch", type=int)
        c.add_argument("which", choices=["ours", "released"])
        c.add_argument("--threads", type=int, default=2)
        c.add_argument("--set", action="append", default=[])
        a = c.parse_args(argv[1:])
        torch.set_num_threads(a.threads)
        torch.set_flush_denormal(True)
        print(json.dumps(memory_child(a.config, a.set, a.batch, a.which == "released")))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--datasets", default="market,deepfashion")
    p.add_argument("--models", default="xinggan,xingganpp")
    p.add_argument("--batches", default=None, help="default 1,8 on CPU, 1,32 on GPU")
    p.add_argument("--attention", default=None,
                   help="attention implementations to time on the first batch (default: auto "
                        "and the two it does not resolve to)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-iteration", action="store_true", help="skip the full training iteration")
    p.add_argument("--no-memory", action="store_true", help="skip the CPU peak-memory subprocess")
    p.add_argument("--no-released", action="store_true",
                   help="skip the side-by-side released forward pass")
    p.add_argument("--out", default="benchmarks/benchmark")
    args = p.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
        torch.set_flush_denormal(True)  # as train.py runs on CPU; ours and released alike
    datasets = args.datasets.split(",")
    models = args.models.split(",")
    batches = [int(b) for b in (args.batches or ("1,32" if device.type == "cuda" else "1,8")).split(",")]
    # "auto" is what the configs use (chunked on CPU, sdpa on GPU); the others for comparison
    default_impls = "auto,sdpa,reference" if device.type == "cpu" else "auto,chunked,reference"
    impls = (args.attention or default_impls).split(",")
    repeats = args.repeats
    amps = ["off", "bf16"] if device.type == "cuda" else ["off"]
    if args.quick:
        datasets, models, batches, repeats = ["market"], ["xinggan"], [1], 2
        impls = ["auto", "sdpa"]
    rows = []
    from tqdm import tqdm

    plan = []
    for ds in datasets:
        for model in models:
            for bi, batch in enumerate(batches):
                for amp in amps:
                    for impl in (impls if bi == 0 and amp == "off" else impls[:1]):
                        plan.append((ds, model, batch, amp, impl))
    released_done = set()
    results = {"machine": machine(), "device": str(device), "quick": args.quick,
               "repeats": repeats, "command": "python scripts/benchmark.py " + " ".join(argv),
               "memory_method": ("CUDA max allocated during G fwd+bwd" if device.type == "cuda"
                                 else "rise of the peak RSS over one G fwd+bwd in a fresh "
                                 "process (VmHWM reset just before the step)"),
               "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(partial: bool) -> None:
        results["complete"] = not partial
        out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
        out.with_suffix(".md").write_text(markdown(results))

    for ds, model, batch, amp, impl in tqdm(plan, desc="benchmark", unit="setting"):
        config = CONFIGS[(ds, model)]
        overrides = [f"model.generator.attention_impl={impl}"]
        cfg = load(config, overrides)
        row = {"dataset": ds, "model": model, "batch": batch, "amp": amp, "attention": impl,
               "config": config}
        with_released = (model == "xinggan" and amp == "off" and not args.no_released
                         and (ds, batch) not in released_done)
        if device.type == "cuda":
            sdpa_kernel_report()  # start this row's record afresh
        # CPU peak memory first, in subprocesses, while this process holds little
        released_peak = None
        if device.type == "cpu" and not args.no_memory:
            release_freed_memory()
            try:
                row["peak_memory_gb"] = cpu_peak_rise(config, overrides, batch,
                                                      args.threads)["rise_gb"]
                if with_released:
                    released_peak = cpu_peak_rise(config, overrides, batch, args.threads,
                                                  released=True)["rise_gb"]
            except RuntimeError as exc:  # e.g. the subprocess ran out of memory
                row["memory_error"] = str(exc)[:200]
        try:
            row.update(bench_generator(cfg, batch, device, repeats, amp, with_released))
            if released_peak is not None:
                row["released"]["peak_memory_gb"] = released_peak
            if with_released:
                released_done.add((ds, batch))
            if not args.no_iteration and impl == impls[0]:
                it = bench_iteration(cfg, batch, device, max(1, repeats // 2), amp)
                projection = schedule_projection(cfg, batch, it["median_s"])
                if projection:
                    it["projected"] = projection
                row["iteration"] = it
            if device.type == "cuda" and impl == "auto":
                row["sdpa_kernels"] = sdpa_kernel_report()
        except (RuntimeError, MemoryError) as exc:  # e.g. out of memory: record and go on
            row["error"] = str(exc).splitlines()[0][:200]
        if device.type == "cpu" and model == "xinggan" and amp == "off":
            row["reference"] = REFERENCE_CPU.get((ds, batch))
        rows.append(row)
        write(partial=True)  # a crash or a kill later keeps the rows measured so far
        tqdm.write(json.dumps({k: (v["median_s"] if isinstance(v, dict) and "median_s" in v else v)
                               for k, v in row.items() if k not in ("reference", "released")}))
    write(partial=False)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
