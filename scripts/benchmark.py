"""Benchmark: generator speed beside the released forward pass, the training iteration, memory,
ops and host reads per iteration, and the data loader (benchmarks/README.md says what each is)."""
import argparse
import sys

import torch

from xinggan import runtime
from xinggan.bench import report, workloads
from xinggan.precision import resolve_amp
from xinggan.progress import progress


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="Market, XingGAN, batch 1; unless given, auto,sdpa, 2 repeats")
    p.add_argument("--datasets", default="market,deepfashion", help="of market, deepfashion, toy")
    p.add_argument("--models", default="xinggan,xingganpp")
    p.add_argument("--batches", default=None, help="default 1,8 on CPU, 1,32 on GPU")
    p.add_argument("--attention", default=None, help="timed at the first batch (default: auto, sdpa|chunked, reference)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default 7; 2 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--no-iteration", action="store_true", help="skip the full training iteration")
    p.add_argument("--no-memory", action="store_true", help="skip the CPU peak memory (fresh processes)")
    p.add_argument("--no-released", action="store_true", help="skip the released forward pass")
    p.add_argument("--amp", default=None, help="of off,bf16,fp16 (default: off, and bf16 where amp auto picks it)")
    p.add_argument("--tf32", choices=["on", "off"], default=None, help="CUDA TF32 (default: the configs')")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--deviation-pairs", type=int, default=16, help="inputs for the SSIM of AMP against fp32")
    p.add_argument("--out", default=None, help="output prefix (default runs/benchmarks/benchmark)")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = (p := parser()).parse_args(argv)
    try:
        device = runtime.pick_device(args.device)
    except runtime.DeviceError as exc:
        p.error(str(exc))
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    datasets, models = args.datasets.split(","), args.models.split(",")
    batches = [int(b) for b in (args.batches or ("1,32" if device.type == "cuda" else "1,8")).split(",")]
    impls = ["auto", "sdpa" if device.type == "cpu" else "chunked", "reference"]
    if args.quick:
        datasets, models, batches, impls = ["market"], ["xinggan"], [1], ["auto", "sdpa"]
    impls = args.attention.split(",") if args.attention else impls
    configs = sorted({c for (d, m), c in workloads.CONFIGS.items() if d in datasets and m in models})
    if not configs:
        p.error(f"no config for {args.datasets} x {args.models}; known: "
                + ", ".join(f"{d}/{m}" for d, m in workloads.CONFIGS))
    amps = args.amp.split(",") if args.amp else ["off", "bf16"][:1 + (resolve_amp("auto", device)[0] is not None)]
    if set(amps) - set(workloads.AMP_DTYPES) or ("fp16" in amps and device.type != "cuda"):
        p.error(f"--amp {args.amp}: choose from off, bf16, fp16 (fp16 on CUDA only)")
    cfgs = [workloads.load(c) for c in configs]  # process-wide flags: TF32 only if every config wants it
    tf32 = args.tf32 == "on" if args.tf32 else all(c.train.tf32 for c in cfgs)
    deterministic = any(c.train.deterministic for c in cfgs)
    backends = runtime.configure_backends(device, deterministic=deterministic, tf32=tf32)
    print("backends: " + "; ".join(backends) + f"; AMP rows: {', '.join(amps)}", flush=True)
    settings = workloads.plan(datasets, models, batches, amps, impls, device, released=not args.no_released)
    options = workloads.Options(repeats=args.repeats or (2 if args.quick else 7), warmup=args.warmup,
                                threads=args.threads, memory=not args.no_memory, iteration=not args.no_iteration,
                                deviation_pairs=args.deviation_pairs)
    results = {"machine": runtime.machine(device), "device": str(device), "quick": args.quick, "backends": backends,
               "tf32": tf32, "deterministic": deterministic, "repeats": options.repeats, "warmup": args.warmup,
               "command": "python scripts/benchmark.py " + " ".join(argv), "rows": [],
               "memory_method": "CUDA max allocated during G fwd+bwd" if device.type == "cuda" else
               "rise of the peak RSS over one G fwd+bwd in a fresh process (VmHWM reset just before the step)"}
    out = report.resolve_out(args.out, "benchmark")
    for setting in progress(settings, desc="benchmark", unit="setting"):
        results["rows"] += workloads.measure_setting(setting, device, options)
        report.write_pair(out, {**results, "complete": False}, report.markdown({**results, "complete": False}))
    print("wrote %s and %s" % report.write_pair(out, {**results, "complete": True}, report.markdown(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
