#!/usr/bin/env python
"""Ablation sweep: a base config and overlays, each variant trained (train.py --resume) and scored
(test.py, the base's protocol) as submitit jobs on this machine or on Slurm, then one table.

    python scripts/sweep.py --base configs/market.yaml --overlays configs/ablations/sa_only.yaml \\
        configs/ablations/as_only.yaml [--set key=value ...] --out sweeps/market_ablation \\
        [--launcher slurm --time 1440 --gpus-per-node 1 ...]
    python scripts/sweep.py --status sweeps/market_ablation

The same command again never retrains a finished variant and resumes the others; once all are
scored, <out>/ablation.md, .csv and .tex hold the table. Guide: docs/ablations.md.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from xinggan.sweep.ablation import status_lines
from xinggan.sweep.launch import run_sweep
from xinggan.sweep.variants import SweepError

SLURM_ONLY = ("time", "partition", "nodes", "cpus_per_task", "mem", "array_parallelism",
              "slurm_extra", "slurm_setup", "signal_delay")


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise SweepError(message)  # one line, exit status 2


def at_least(low: int):
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < low:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least {low}")
        return int(text)
    return parse


def slurm_minutes(text: str) -> int:
    """Slurm's ``M``, ``H:M:S`` or ``D-H:M:S`` in whole minutes."""
    found = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+):(\d+)|(\d+)", text)
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r}: expected minutes, H:M:S or D-H:M:S")
    days, hours, minutes, seconds, only = (int(x or 0) for x in found.groups())
    return max(1, only or days * 1440 + hours * 60 + minutes + (seconds > 0))


def sbatch_option(text: str) -> tuple:
    key, eq, value = text.lstrip("-").partition("=")
    if not re.fullmatch(r"[a-z][a-z0-9-]*", key) or key in ("array", "dependency", "signal", "output"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected an sbatch option such as constraint=a100 "
                                         "(array, dependency, signal and output are the sweep's)")
    return key, value if eq else True


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
    slurm = p.add_argument_group("Slurm (--launcher slurm)")
    slurm.add_argument("--time", type=slurm_minutes, help="required: each job's time limit (minutes, "
                       "H:M:S or D-H:M:S); a job near it saves and is requeued")
    slurm.add_argument("--partition")
    slurm.add_argument("--nodes", type=at_least(1), help="nodes per training job (DDP across them)")
    slurm.add_argument("--cpus-per-task", type=at_least(1), help="default: the base's data.num_workers + 2")
    slurm.add_argument("--mem", help="memory per node, e.g. 64G")
    slurm.add_argument("--array-parallelism", type=at_least(1), help="training jobs at a time")
    slurm.add_argument("--slurm-extra", type=sbatch_option, nargs="+", metavar="KEY[=VALUE]",
                       help="more sbatch options, e.g. constraint=a100 qos=high exclusive")
    slurm.add_argument("--slurm-setup", action="append", metavar="LINE", help="shell line before a job")
    slurm.add_argument("--signal-delay", type=at_least(0), metavar="S", help="SIGUSR2 S seconds before "
                       "the time limit (default 90)")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Refuse options that cannot go together, before anything else."""
    given = ["--" + n.replace("_", "-") for n in SLURM_ONLY if getattr(args, n) is not None]
    if args.launcher == "local" and given:
        raise SweepError(f"{', '.join(given)}: Slurm option(s) without --launcher slurm")
    missing = [n for n, v in (("--time", args.time), ("--gpus-per-node", args.gpus_per_node)) if v is None]
    if args.launcher == "slurm" and missing:
        raise SweepError(f"--launcher slurm needs {' and '.join(missing)} (each job's time limit; "
                         "GPUs per node, 0 for a CPU cluster)")


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
        if args.status and (args.base or args.overlays or args.out):
            raise SweepError("--status OUT takes no other options")
        if args.status:
            print("\n".join(status_lines(Path(args.status))))
            return 0
        if not args.base or not args.out:
            raise SweepError("--base and --out are required (or --status OUT)")
        check_args(args)
        return run_sweep(args)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
