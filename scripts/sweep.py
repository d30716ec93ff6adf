#!/usr/bin/env python
"""Ablation sweep: a base config and overlays, each variant trained (train.py --resume) and scored
(test.py, the base's protocol) as submitit jobs here or on Slurm; then one table. The same command
again never retrains a finished variant and resumes the others. Guide: docs/ablations.md.

    python scripts/sweep.py --base configs/market.yaml --overlays configs/ablations/sa_only.yaml \\
        configs/ablations/as_only.yaml --out sweeps/market [--launcher slurm --time 1440 ...]
    python scripts/sweep.py --status sweeps/market
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from xinggan.sweep.ablation import SweepError, status_lines
from xinggan.sweep.launch import run_sweep


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise SweepError(message)  # one line, exit status 2


def at_least(low: int):
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < low:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least {low}")
        return int(text)
    return parse


def sbatch_option(text: str) -> tuple:
    key, eq, value = text.lstrip("-").partition("=")
    if key in ("array", "dependency", "signal", "output") or not re.fullmatch(r"[a-z][a-z0-9-]*", key):
        raise argparse.ArgumentTypeError(f"{text!r}: expected an sbatch option the sweep leaves free")
    return key, value if eq else True


SLURM_OPTIONS = {  # --launcher slurm only
    "--time": dict(type=at_least(1), metavar="MINUTES", help="required: each job's time limit"),
    "--partition": {}, "--mem": dict(help="memory per node, e.g. 64G"),
    "--nodes": dict(type=at_least(1), help="nodes per training job (DDP across them)"),
    "--cpus-per-task": dict(type=at_least(1), help="default: the base's data.num_workers + 2"),
    "--array-parallelism": dict(type=at_least(1), help="training jobs at a time"),
    "--slurm-extra": dict(type=sbatch_option, nargs="+", metavar="KEY[=VALUE]",
                          help="more sbatch options, e.g. constraint=a100 qos=high exclusive"),
    "--signal-delay": dict(type=at_least(0), metavar="S", help="SIGUSR2 S seconds before --time (default 90)"),
}


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="scripts/sweep.py", description=__doc__, allow_abbrev=False,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--status", metavar="OUT", help="print where the sweep in OUT stands")
    p.add_argument("--base", help="the base config (the full model's row)")
    p.add_argument("--overlays", nargs="*", default=[], metavar="YAML", help="one variant each")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides of every variant, e.g. train.iterations=20000")
    p.add_argument("--out", help="the sweep folder")
    p.add_argument("--launcher", default="local", choices=("local", "slurm"))
    p.add_argument("--gpus-per-node", type=at_least(0), help="GPUs per training job, a DDP process "
                   "each (local default: 1 if any; slurm: required, 0 for a CPU cluster)")
    p.add_argument("--max-requeues", type=at_least(0), default=20, help="time-limit requeues per job")
    slurm = p.add_argument_group("Slurm")
    for flag, options in SLURM_OPTIONS.items():
        slurm.add_argument(flag, **options)
    return p


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
        if args.status and not (args.base or args.overlays or args.out):
            print("\n".join(status_lines(Path(args.status))))
            return 0
        if args.status or not (args.base and args.out):
            raise SweepError("give --base and --out, or --status OUT alone")
        given = [flag for flag in SLURM_OPTIONS if getattr(args, flag[2:].replace("-", "_")) is not None]
        if args.launcher == "local" and given:
            raise SweepError(f"{', '.join(given)}: Slurm option(s) without --launcher slurm")
        missing = [n for n, v in (("--time", args.time), ("--gpus-per-node", args.gpus_per_node)) if v is None]
        if args.launcher == "slurm" and missing:  # before anything else
            raise SweepError(f"--launcher slurm needs {' and '.join(missing)} (each job's time limit; "
                             "GPUs per node, 0 for a CPU cluster)")
        return run_sweep(args)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
