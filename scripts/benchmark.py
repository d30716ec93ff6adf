"""Benchmark suite: generator throughput, training-iteration cost and peak memory.

    python scripts/benchmark.py [--quick] [--datasets market,deepfashion]
                                [--models xinggan,xingganpp] [--batches 1,8] [--repeats 7]
                                [--amp off,bf16] [--tf32 on|off] [--device auto|cpu|cuda]
                                [--threads 2] [--out benchmarks/benchmark]

Measured on ``--device`` (``auto``: CUDA if available, else the CPU with ``--threads``
threads), with the backend flags training sets (:func:`xinggan.runtime.configure_backends`
with the configs' ``train.deterministic`` and ``train.tf32``: on CUDA TF32 products and
``cudnn.benchmark``, on the CPU denormals flushed to zero), so that the projected hours are
those of the configuration that trains. On CUDA, ``amp off`` is therefore float32 weights with
TF32 matmuls and convolutions unless ``--tf32 off`` (default: the configs' ``train.tf32``);
the report says which.  For each dataset x model x batch it records, each as the median and spread
(min, max) of ``--repeats`` runs after a warm-up run:

- ``g_eval``: generator forward in eval mode (seconds, images/s);
- ``g_train``: generator forward + backward of an L1 loss in train mode, the setting of the
  reference cost table (``docs/architecture.md``, Reference cost);
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
- AMP (``--amp``; default (:func:`default_amps`) ``off,bf16`` where
  :func:`xinggan.precision.resolve_amp` ``auto`` picks bf16: a GPU with bf16 support, a CPU
  with AMX-BF16 or AVX512-BF16; ``off`` alone elsewhere, e.g. on CPUs whose bf16 is emulated): on CPU the AMP settings
  of one dataset x model x batch are timed together, interleaved with each other and with the
  released fp32 pass (ours bf16, ours fp32, released, ours bf16, ...), for ``g_eval``,
  ``g_train`` and ``iteration``. Each non-fp32 row also records its ``deviation`` from our
  fp32 output on the same weights and inputs: max and mean absolute difference of the eval
  output (range [-1, 1]), and the mean SSIM (PATN setting, uint8) of the reduced-precision
  images against the fp32 images of a small generated set (``--deviation-pairs`` inputs);
- on GPU, for ``auto``, which fused SDPA kernels PyTorch reported for each attention shape
  (``auto`` runs ``chunked`` where there is none, rather than SDPA's math path with its N x N
  maps).

Results go to ``<out>.json`` and ``<out>.md`` with the machine, versions and commit.
``--quick`` runs a reduced matrix (Market, batch 1, 2 repeats) in a couple of minutes on CPU.
``--datasets toy`` times the CPU demo's network (``configs/toy.yaml``, 64 x 32).
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
from scripts.memory_probe import measure_in_fresh_process, release_freed_memory  # noqa: E402

CONFIGS = {
    ("market", "xinggan"): "configs/market.yaml",
    ("deepfashion", "xinggan"): "configs/deepfashion.yaml",
    ("market", "xingganpp"): "configs/market_xingganpp.yaml",
    ("deepfashion", "xingganpp"): "configs/deepfashion_xingganpp.yaml",
    ("toy", "xinggan"): "configs/toy.yaml",
}

# The released code's cost (docs/architecture.md, Reference cost: CPU, 2 threads, median of 7 runs).
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
    return seeded_inputs(cfg, batch, device, 0)


def seeded_inputs(cfg, batch: int, device: torch.device, seed: int):
    """Random image / pose / target tensors of the config's size, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.data.height, cfg.data.width
    image = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    pose = torch.rand(batch, 18, h, w, generator=g)
    pose2 = torch.rand(batch, 18, h, w, generator=g)
    target = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    return [t.to(device) for t in (image, pose, pose2, target)]


def load(path: str, overrides: list[str]):
    return load_config(REPO / path, overrides)


WARMUP = 1  # untimed runs before the timed ones (--warmup)


def timed_interleaved(fns: dict, device: torch.device, repeats: int,
                      warmup: int | None = None) -> dict:
    """Like :func:`timed` for several callables, run in turn (a, b, a, b, ...), so that a
    machine whose speed drifts (a shared or throttled host) affects them alike."""
    warmup = WARMUP if warmup is None else warmup
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


AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_amps(device: torch.device) -> tuple[list[str], str]:
    """The AMP settings timed when ``--amp`` is not given, and the line saying why: ``off`` and
    ``bf16`` where :func:`xinggan.precision.resolve_amp` ``auto`` picks bf16 on ``device`` (a GPU
    with bf16 support; a CPU with AMX-BF16 or AVX512-BF16 and oneDNN's bf16 path), else ``off``
    alone (bf16 would be emulated, and slow)."""
    from xinggan.precision import resolve_amp

    auto_dtype, line = resolve_amp("auto", device)
    return (["off", "bf16"] if auto_dtype is not None else ["off"]), line


def backend_settings(cfgs, tf32: str | None = None) -> tuple[bool, bool]:
    """``(deterministic, tf32)`` to time with: the configs' ``train.deterministic`` and
    ``train.tf32`` (``tf32``, ``"on"`` or ``"off"``, overrides the latter). The flags are
    process-wide, so the configs of one run must agree (ValueError naming the key otherwise)."""
    cfgs = list(cfgs)
    values = {}
    for key in ("deterministic", "tf32"):
        seen = {getattr(cfg.train, key) for cfg in cfgs}
        if key == "tf32" and tf32 is not None:
            seen = {tf32 == "on"}
        if len(seen) > 1:
            hint = "; pass --tf32 on or off" if key == "tf32" else ""
            raise ValueError(f"train.{key} differs between the configs of this run{hint}")
        values[key] = seen.pop() if seen else (key == "tf32")
    return values["deterministic"], values["tf32"]


def precision_note(results: dict) -> str | None:
    """What ``amp off`` means in this report: on CUDA, float32 weights with TF32 products
    unless TF32 was off."""
    if not str(results.get("device", "")).startswith("cuda") or "tf32" not in results:
        return None
    if results["tf32"]:
        return ("amp off on CUDA = float32 weights with TF32 matmuls (and TF32 cuDNN "
                "convolutions), as `train.tf32: true` trains; `--tf32 off` times strict float32.")
    return "amp off on CUDA = strict float32 (TF32 off: `--tf32 off` or `train.tf32: false`)."


def bench_generator(cfg, batch: int, device: torch.device, repeats: int, amps,
                    released: bool = False, deviation_pairs: int = 0) -> dict:
    """``g_eval`` and ``g_train`` of our generator under each AMP setting of ``amps`` (a name
    or a list), timed interleaved; with ``released``, the literal released forward pass (fp32)
    on the same weights and inputs too, interleaved with ours. Returns ``{amp: {...}}`` (plus
    ``"released"``); each non-``off`` entry has its ``deviation`` from fp32."""
    from xinggan.models import build_generator
    from xinggan.precision import autocast

    amps = [amps] if isinstance(amps, str) else list(amps)
    torch.manual_seed(0)
    generator = build_generator(cfg).to(device)
    image, pose, pose2, target = inputs(cfg, batch, device)

    def eval_step(dtype):
        def step():
            with torch.no_grad(), autocast(device, dtype):
                return generator(image, pose, pose2)
        return step

    def train_step(dtype):
        def step():
            generator.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                out = generator(image, pose, pose2)
            (out.float() - target).abs().mean().backward()
        return step

    evals = {amp: eval_step(AMP_DTYPES[amp]) for amp in amps}
    trains = {amp: train_step(AMP_DTYPES[amp]) for amp in amps}
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
    out: dict = {}
    for amp in amps:
        out[amp] = {"g_eval": {**ev[amp], "images_per_s": batch / ev[amp]["median_s"]}}
        if amp != "off":
            out[amp]["deviation"] = deviation(generator, cfg, batch, device, AMP_DTYPES[amp],
                                              deviation_pairs)
    generator.train()
    tr = timed_interleaved(trains, device, repeats)
    for amp in amps:
        out[amp]["g_train"] = {**tr[amp], "images_per_s": batch / tr[amp]["median_s"]}
    if released:
        out["released"] = {
            "g_eval": {**ev["released"], "images_per_s": batch / ev["released"]["median_s"]},
            "g_train": {**tr["released"], "images_per_s": batch / tr["released"]["median_s"]}}
    if device.type == "cuda":  # one more step of ours alone for its peak
        for amp in amps:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            trains[amp]()
            torch.cuda.synchronize(device)
            out[amp]["peak_memory_gb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**30
    return out


@torch.no_grad()
def deviation(generator, cfg, batch: int, device: torch.device, dtype, pairs: int) -> dict:
    """How far the eval output under autocast ``dtype`` is from fp32 on the same inputs: max
    and mean abs over the timed batch, and over ``pairs`` further seeded inputs (at least the
    batch) the mean SSIM (PATN setting) of the uint8 images against the fp32 images."""
    from xinggan.metrics.ssim import PATN_SSIM, ssim
    from xinggan.precision import autocast
    from xinggan.visualize import to_uint8

    def both(image, pose, pose2):
        with autocast(device, None):
            ref = generator(image, pose, pose2).float()
        with autocast(device, dtype):
            low = generator(image, pose, pose2).float()
        return ref, low

    ref, low = both(*inputs(cfg, batch, device)[:3])
    diff = (low - ref).abs()
    result = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean())}
    refs, lows, done, seed = [ref], [low], batch, 1
    while done < pairs:
        n = min(batch, pairs - done)
        r, lo = both(*seeded_inputs(cfg, n, device, seed)[:3])
        refs.append(r)
        lows.append(lo)
        done, seed = done + n, seed + 1
    as_uint8 = [torch.from_numpy(to_uint8(torch.cat(t))).permute(0, 3, 1, 2)
                for t in (lows, refs)]
    scores = ssim(as_uint8[0], as_uint8[1], PATN_SSIM)
    result.update({"ssim_vs_fp32": float(scores.mean()), "ssim_vs_fp32_min": float(scores.min()),
                   "ssim_pairs": int(scores.numel())})
    return result


def bench_iteration(cfg, batch: int, device: torch.device, repeats: int, amps) -> dict:
    """One full training iteration per AMP setting of ``amps`` (a name or a list), each its
    own trainer from the same seed, timed interleaved; ``{amp: {...}}``."""
    from xinggan.training import Trainer

    amps = [amps] if isinstance(amps, str) else list(amps)
    image, pose, pose2, target = inputs(cfg, batch, device)
    batch_dict = {"source_image": image, "source_pose": pose, "target_pose": pose2,
                  "target_image": target}
    steps = {}
    for amp in amps:
        overrides = [f"train.batch_size={batch}", f"train.amp={amp}", "loss.vgg_weights=random",
                     f"train.device={device}"]
        trainer = Trainer(cfg.replace(*overrides), "/nonexistent-benchmark-run", device=device,
                          progress=False, tensorboard=False)
        steps[amp] = (lambda t: lambda: t.step(batch_dict))(trainer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = timed_interleaved(steps, device, repeats)
    out = {}
    for amp in amps:
        res = dict(times[amp])
        res["images_per_s"] = batch / res["median_s"]
        if device.type == "cuda" and len(amps) == 1:
            res["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        out[amp] = res
    return out


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

    from xinggan.runtime import configure_backends

    cfg = load(config, overrides)
    configure_backends("cpu", deterministic=cfg.train.deterministic, tf32=cfg.train.tf32)
    image, pose, pose2, target = inputs(cfg, batch, torch.device("cpu"))
    if released:
        sd = official_weights(cfg, torch.device("cpu"))
        forward = released_step(cfg, sd, True)
    else:
        torch.manual_seed(0)
        forward = build_generator(cfg).train()
    from scripts.memory_probe import peak_rss_over

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
             *([f"Backends: {'; '.join(results['backends'])}.", ""]
               if results.get("backends") else []),
             *([note, ""] if (note := precision_note(results)) else []),
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
    lines += amp_section(results["rows"])
    side = [r for r in results["rows"] if r.get("released")]
    if side:
        lines += ["", "## Side by side with the released forward pass (XingGAN, same machine)",
                  "",
                  "`released`: the literal released forward (`xinggan/official/released.py`, N x N "
                  "maps materialised) on the same weights and inputs, timed by the same loop. "
                  "`reference`: the released code's cost table (`docs/architecture.md`, Reference cost), for comparison.", "",
                  "| dataset | batch | attention | G eval ours / released s | G fwd+bwd ours / "
                  "released s | peak GB ours / released | reference eval / fwd+bwd / peak |",
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


def _x(fast: dict | None, slow: dict | None) -> str:
    """How many times faster ``fast`` is than ``slow`` (medians)."""
    if not fast or not slow:
        return "-"
    return f"x{slow['median_s'] / fast['median_s']:.2f}"


def amp_section(rows: list) -> list[str]:
    """Reduced precision beside our fp32 and the released fp32 pass, from the same run."""
    fp32 = {(r["dataset"], r["model"], r["batch"], r["attention"]): r for r in rows
            if r["amp"] == "off"}
    amp_rows = [(r, fp32.get((r["dataset"], r["model"], r["batch"], r["attention"])))
                for r in rows if r["amp"] != "off"]
    if not amp_rows:
        return []
    lines = ["", "## Reduced precision beside fp32 (same run, interleaved on CPU)", "",
             "Seconds (median). (xN): how many times faster the AMP row is than our fp32 / "
             "than the released fp32 pass. Deviation: the AMP eval output against our fp32 "
             "output on the same weights and inputs (range [-1, 1]), and the mean (min) SSIM of "
             "the AMP images against the fp32 images of a small generated set.", "",
             "| dataset | model | batch | amp | G eval amp / fp32 / released | G fwd+bwd amp / "
             "fp32 / released | iteration amp / fp32 | max abs | mean abs | SSIM vs fp32 "
             "(pairs) |", "|---|---|---|---|---|---|---|---|---|---|"]

    def secs(v):
        return f"{v['median_s']:.3f}" if v else "-"

    for r, f in amp_rows:
        f = f or {}
        rel = f.get("released") or {}

        def cell(key):
            a, b, c = r.get(key), f.get(key), rel.get(key)
            text = f"{secs(a)} / {secs(b)}"
            if key != "iteration":
                text += f" / {secs(c)}"
            text += f" ({_x(a, b)}"
            if key != "iteration" and c:
                text += f", {_x(a, c)}"
            return text + ")"

        dev = r.get("deviation") or {}
        ssim_cell = (f"{dev['ssim_vs_fp32']:.4f} ({dev['ssim_vs_fp32_min']:.4f}; "
                     f"{dev['ssim_pairs']})" if dev else "-")
        lines.append(f"| {r['dataset']} | {r['model']} | {r['batch']} | {r['amp']} | "
                     f"{cell('g_eval')} | {cell('g_train')} | {cell('iteration')} | "
                     f"{dev.get('max_abs', float('nan')):.4f} | "
                     f"{dev.get('mean_abs', float('nan')):.5f} | {ssim_cell} |")
    return lines


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
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed runs before the timed ones (0: for very slow settings)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-iteration", action="store_true", help="skip the full training iteration")
    p.add_argument("--no-memory", action="store_true", help="skip the CPU peak-memory subprocess")
    p.add_argument("--no-released", action="store_true",
                   help="skip the side-by-side released forward pass")
    p.add_argument("--amp", default=None,
                   help="AMP settings, comma-separated from off,bf16,fp16 (default: off,bf16 on "
                        "GPU and on CPUs with native bf16 units, else off)")
    p.add_argument("--tf32", choices=["on", "off"], default=None,
                   help="CUDA: TF32 float32 matmuls and convolutions (default: the configs' "
                        "train.tf32, as training runs)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: CUDA if available, else the CPU")
    p.add_argument("--deviation-pairs", type=int, default=16,
                   help="generated inputs for the SSIM of the AMP images against fp32")
    p.add_argument("--out", default="benchmarks/benchmark")
    args = p.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available here")
    device = torch.device("cuda" if args.device == "cuda" or (
        args.device == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    datasets = args.datasets.split(",")
    models = args.models.split(",")
    batches = [int(b) for b in (args.batches or ("1,32" if device.type == "cuda" else "1,8")).split(",")]
    # "auto" is what the configs use (chunked on CPU, sdpa on GPU); the others for comparison
    default_impls = "auto,sdpa,reference" if device.type == "cpu" else "auto,chunked,reference"
    impls = (args.attention or default_impls).split(",")
    repeats = args.repeats
    global WARMUP
    WARMUP = args.warmup
    if args.quick:
        datasets, models, batches, repeats = ["market"], ["xinggan"], [1], 2
        impls = ["auto", "sdpa"]
    # The flags training sets (before any CUDA work), from the configs this run times.
    from xinggan.runtime import configure_backends

    missing = [f"{ds}/{m}" for ds in datasets for m in models if (ds, m) not in CONFIGS]
    configs = sorted({CONFIGS[(ds, m)] for ds in datasets for m in models if (ds, m) in CONFIGS})
    if not configs:
        p.error(f"no config for {', '.join(missing)}; known: "
                f"{', '.join(f'{ds}/{m}' for ds, m in CONFIGS)}")
    if missing:
        print(f"no config for {', '.join(missing)}: skipped", flush=True)
    try:
        deterministic, tf32 = backend_settings([load(c, []) for c in configs], args.tf32)
    except ValueError as exc:
        p.error(str(exc))
    backends = configure_backends(device, deterministic=deterministic, tf32=tf32)
    print("backends: " + "; ".join(backends), flush=True)
    if args.amp:
        amps = args.amp.split(",")
        unknown = [a for a in amps if a not in AMP_DTYPES]
        if unknown:
            p.error(f"--amp: unknown setting(s) {', '.join(unknown)}; choose from off, bf16, fp16")
        if "fp16" in amps and device.type != "cuda":
            p.error("--amp: fp16 needs a CUDA device")
    else:
        amps, line = default_amps(device)
        if device.type == "cpu" and amps == ["off"]:
            print(f"AMP rows: off only; {line}. Pass --amp bf16,off to time the emulated bf16 "
                  "path anyway", flush=True)
    rows = []
    from tqdm import tqdm

    # On CPU the AMP settings of a setting are timed together, interleaved; on GPU one at a
    # time (each row its own CUDA peak memory).
    groups = [tuple(amps)] if device.type == "cpu" else [(amp,) for amp in amps]
    plan = []
    for ds in datasets:
        for model in models:
            if (ds, model) not in CONFIGS:
                continue
            for bi, batch in enumerate(batches):
                for group in groups:
                    for impl in impls if bi == 0 else impls[:1]:
                        if impl != impls[0]:  # other attention implementations: fp32 only
                            if "off" not in group:
                                continue
                            group = ("off",)
                        plan.append((ds, model, batch, group, impl))
    released_done = set()
    results = {"machine": machine(), "device": str(device), "quick": args.quick,
               "backends": backends, "tf32": tf32, "deterministic": deterministic,
               "repeats": repeats, "warmup": args.warmup, "command": "python scripts/benchmark.py " + " ".join(argv),
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

    for ds, model, batch, group, impl in tqdm(plan, desc="benchmark", unit="setting"):
        config = CONFIGS[(ds, model)]
        overrides = [f"model.generator.attention_impl={impl}"]
        cfg = load(config, overrides)
        group_rows = {amp: {"dataset": ds, "model": model, "batch": batch, "amp": amp,
                            "attention": impl, "config": config} for amp in group}
        with_released = (model == "xinggan" and "off" in group and not args.no_released
                         and (ds, batch) not in released_done)
        if device.type == "cuda":
            sdpa_kernel_report()  # start this row's record afresh
        # CPU peak memory first (fp32), in subprocesses, while this process holds little
        released_peak = None
        if device.type == "cpu" and not args.no_memory and "off" in group:
            row = group_rows["off"]
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
            measured = bench_generator(cfg, batch, device, repeats, list(group), with_released,
                                       args.deviation_pairs)
            for amp in group:
                group_rows[amp].update(measured[amp])
            if with_released:
                group_rows["off"]["released"] = measured["released"]
                if released_peak is not None:
                    group_rows["off"]["released"]["peak_memory_gb"] = released_peak
                released_done.add((ds, batch))
            if not args.no_iteration and impl == impls[0]:
                its = bench_iteration(cfg, batch, device, max(1, repeats // 2), list(group))
                for amp, it in its.items():
                    projection = schedule_projection(cfg, batch, it["median_s"])
                    if projection:
                        it["projected"] = projection
                    group_rows[amp]["iteration"] = it
            if device.type == "cuda" and impl == "auto":
                group_rows[group[0]]["sdpa_kernels"] = sdpa_kernel_report()
        except (RuntimeError, MemoryError) as exc:  # e.g. out of memory: record and go on
            for row in group_rows.values():
                row["error"] = str(exc).splitlines()[0][:200]
        for amp, row in group_rows.items():
            if device.type == "cpu" and model == "xinggan" and amp == "off":
                row["reference"] = REFERENCE_CPU.get((ds, batch))
            rows.append(row)
            tqdm.write(json.dumps({k: (v["median_s"] if isinstance(v, dict) and "median_s" in v
                                       else v)
                                   for k, v in row.items()
                                   if k not in ("reference", "released", "deviation")}))
        write(partial=True)  # a crash or a kill later keeps the rows measured so far
    write(partial=False)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
