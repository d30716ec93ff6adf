"""Benchmark suite: generator throughput, training-iteration cost and peak memory.

    python scripts/benchmark.py [--quick] [--datasets market,deepfashion]
                                [--models xinggan,xingganpp] [--batches 1,8] [--repeats 7]
                                [--amp off,bf16] [--tf32 on|off] [--device auto|cpu|cuda]
                                [--threads 2] [--out runs/benchmarks/benchmark]

Measured on ``--device`` (``auto``: CUDA if available, else the CPU with ``--threads``
threads), with the backend flags training sets (:func:`xinggan.runtime.configure_backends`
with the configs' ``train.deterministic`` and ``train.tf32``: on CUDA TF32 products and
``cudnn.benchmark``, on the CPU denormals flushed to zero), so that the projected hours are
those of the configuration that trains. On CUDA, ``amp off`` is therefore float32 weights with
TF32 matmuls and convolutions unless ``--tf32 off`` (default: the configs' ``train.tf32``);
the report says which.  For each dataset x model x batch it records, each as the median and spread
(min, max) of ``--repeats`` runs after ``--warmup`` warm-up runs:

- ``g_eval``: generator forward in eval mode (seconds, images/s);
- ``g_train``: generator forward + backward of an L1 loss in train mode, the setting of the
  released code's reference cost (``benchmarks/reference_cost.json``);
- ``iteration``: one full training iteration (G step + both D steps + losses), with its CUDA
  peak memory, and, at the config's own batch size, the projected hours of the config's whole
  schedule (``train.iterations``: 37,500 for DeepFashion, 87,500 for Market);
- ``peak_memory``: CUDA max allocated during ``g_train`` on GPU; on CPU the rise of the peak
  resident set size over one ``g_train`` step, in a fresh process
  (``python -m xinggan.bench.memory``) whose high-water mark (``VmHWM``) is reset through
  ``/proc/self/clear_refs`` just before the step, so that building the model does not count;
- ``released`` (XingGAN rows): the same ``g_eval``, ``g_train`` and peak memory for the literal
  released forward pass (:mod:`xinggan.released.network`: functional ops, N x N attention maps
  materialised) on the same weights and inputs, timed by the same loop on the same machine,
  its runs interleaved with ours (ours, released, ours, ...) so that a drifting machine speed
  affects both alike: the side-by-side reference;
- every attention implementation (``auto`` as configured, plus ``sdpa``/``chunked`` and
  ``reference``) on the first batch size;
- AMP (``--amp``; default ``off,bf16`` where :func:`xinggan.precision.resolve_amp` ``auto``
  picks bf16: a GPU with bf16 support, a CPU with AMX-BF16 or AVX512-BF16; ``off`` alone
  elsewhere, e.g. on CPUs whose bf16 is emulated): on CPU the AMP settings of one dataset x
  model x batch are timed together, interleaved with each other and with the released fp32
  pass (ours bf16, ours fp32, released, ours bf16, ...), for ``g_eval``, ``g_train`` and
  ``iteration``. Each non-fp32 row also records its ``deviation`` from our fp32 output on the
  same weights and inputs: max and mean absolute difference of the eval output (range
  [-1, 1]), and the mean SSIM (PATN setting, uint8) of the reduced-precision images against
  the fp32 images of a small generated set (``--deviation-pairs`` inputs);
- on GPU, for ``auto``, which fused SDPA kernels PyTorch reported for each attention shape
  (``auto`` runs ``chunked`` where there is none, rather than SDPA's math path with its N x N
  maps).

Results go to ``<out>.json`` and ``<out>.md`` with the machine, versions and commit; ``--out``
defaults to ``runs/benchmarks/benchmark`` (git-ignored), relative paths are taken from the
repository root, and the stored reports of ``benchmarks/`` are written only when named there.
``--quick`` runs a reduced matrix (Market, batch 1, 2 repeats unless ``--repeats`` says
otherwise) in a couple of minutes on CPU.
``--datasets toy`` times the CPU demo's network (``configs/toy.yaml``, 64 x 32).

The measuring is :mod:`xinggan.bench` (``harness``: timing and memory; ``workloads``: what
is measured; ``report``: the reports); this script parses the options and runs the plan.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from xinggan import runtime
from xinggan.bench import report, workloads


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="Market, XingGAN, batch 1, attention auto and sdpa (or --attention), 2 repeats (or --repeats)")
    p.add_argument("--datasets", default="market,deepfashion")
    p.add_argument("--models", default="xinggan,xingganpp")
    p.add_argument("--batches", default=None, help="default 1,8 on CPU, 1,32 on GPU")
    p.add_argument("--attention", default=None,
                   help="attention implementations to time on the first batch (default: auto "
                        "and the two it does not resolve to)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per measurement (default 7; 2 with --quick)")
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
    p.add_argument("--out", default=None,
                   help="output prefix, <out>.json and <out>.md (default: "
                        "runs/benchmarks/benchmark; relative to the repository root)")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = parser()
    args = p.parse_args(argv)

    try:
        device = runtime.pick_device(args.device)
    except runtime.DeviceError as exc:
        p.error(str(exc))
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    datasets, models = args.datasets.split(","), args.models.split(",")
    batches = [int(b) for b in (args.batches or ("1,32" if device.type == "cuda" else "1,8"))
               .split(",")]
    impls = args.attention.split(",") if args.attention else workloads.default_attention(device)
    repeats = args.repeats or (2 if args.quick else 7)
    if args.quick:  # an --attention given explicitly still applies
        datasets, models, batches = ["market"], ["xinggan"], [1]
        impls = args.attention.split(",") if args.attention else ["auto", "sdpa"]

    missing = [f"{ds}/{m}" for ds in datasets for m in models if (ds, m) not in workloads.CONFIGS]
    configs = sorted({workloads.CONFIGS[(ds, m)] for ds in datasets for m in models
                      if (ds, m) in workloads.CONFIGS})
    if not configs:
        p.error(f"no config for {', '.join(missing)}; known: "
                f"{', '.join(f'{ds}/{m}' for ds, m in workloads.CONFIGS)}")
    if missing:
        print(f"no config for {', '.join(missing)}: skipped", flush=True)
    # The flags training sets (before any CUDA work), from the configs this run times.
    try:
        deterministic, tf32 = workloads.backend_settings(
            [workloads.load(c, []) for c in configs], args.tf32)
    except ValueError as exc:
        p.error(str(exc))
    backends = runtime.configure_backends(device, deterministic=deterministic, tf32=tf32)
    print("backends: " + "; ".join(backends), flush=True)

    if args.amp:
        amps = args.amp.split(",")
        unknown = [a for a in amps if a not in workloads.AMP_DTYPES]
        if unknown:
            p.error(f"--amp: unknown setting(s) {', '.join(unknown)}; choose from off, bf16, fp16")
        if "fp16" in amps and device.type != "cuda":
            p.error("--amp: fp16 needs a CUDA device")
    else:
        amps, line = workloads.default_amps(device)
        if device.type == "cpu" and amps == ["off"]:
            print(f"AMP rows: off only; {line}. Pass --amp bf16,off to time the emulated bf16 "
                  "path anyway", flush=True)

    settings = workloads.plan(datasets, models, batches, amps, impls, device,
                              released=not args.no_released)
    options = workloads.Options(repeats=repeats, warmup=args.warmup, threads=args.threads,
                                memory=not args.no_memory, iteration=not args.no_iteration,
                                deviation_pairs=args.deviation_pairs)
    rows: list = []
    results = {"machine": runtime.machine(device), "device": str(device), "quick": args.quick,
               "backends": backends, "tf32": tf32, "deterministic": deterministic,
               "repeats": repeats, "warmup": args.warmup,
               "command": "python scripts/benchmark.py " + " ".join(argv),
               "memory_method": ("CUDA max allocated during G fwd+bwd" if device.type == "cuda"
                                 else "rise of the peak RSS over one G fwd+bwd in a fresh "
                                 "process (VmHWM reset just before the step)"),
               "rows": rows}
    out = report.resolve_out(args.out, "benchmark")

    from tqdm import tqdm

    for setting in tqdm(settings, desc="benchmark", unit="setting"):
        for row in workloads.measure_setting(setting, device, options):
            rows.append(row)
            tqdm.write(json.dumps({k: (v["median_s"] if isinstance(v, dict) and "median_s" in v
                                       else v)
                                   for k, v in row.items()
                                   if k not in ("reference", "released", "deviation")}))
        report.write_reports(results, out, complete=False)  # a crash later keeps these rows
    json_path, md_path = report.write_reports(results, out, complete=True)
    print(report.markdown(results))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
