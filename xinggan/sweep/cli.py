"""The command line of ``scripts/sweep.py``."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from xinggan.sweep.plan import SweepError

USAGE = """\
Ablation sweep: a base config and overlays, each variant trained and then scored with the base's
evaluation protocol, as submitit jobs on this machine or on Slurm.

    python scripts/sweep.py --base configs/market.yaml \\
        --overlays configs/ablations/sa_only.yaml configs/ablations/as_only.yaml \\
        [--set key=value ...] --out sweeps/market_ablation [--launcher local|slurm] [options]
    python scripts/sweep.py --status sweeps/market_ablation

The base is the first variant (the full model's row) unless --no-base; each overlay is a variant
named by its file stem. Each variant's run folder is <out>/<name> (config.yaml, checkpoints,
train.log, stats.jsonl, results/ with the generated images and metrics, state.json). Starting the
same command again never redoes a finished variant and resumes an unfinished one from its
checkpoint. Once all are scored, <out>/ablation.md, .csv and .tex hold the table (best values in
bold, or named in the CSV's 'best' column). See docs/ablations.md.
"""

# Long options that take no value or one value, for re-spelling "--slurm-extra --qos=high".
_OWN_OPTIONS = {"--base", "--overlays", "--no-base", "--set", "--out", "--status", "--launcher",
                "--parallel", "--gpus-per-node", "--max-requeues", "--partition", "--nodes",
                "--cpus-per-task", "--time", "--mem", "--array-parallelism", "--slurm-extra",
                "--slurm-setup", "--signal-delay", "--dry-run", "-h", "--help"}


def _respell(argv: Sequence[str]) -> list[str]:
    """``--slurm-extra --constraint=a100 --qos=high`` -> ``--slurm-extra=--constraint=a100 ...``
    (argparse would read a value starting with ``--`` as an option)."""
    out, i = [], 0
    argv = list(argv)
    while i < len(argv):
        token = argv[i]
        if token in ("--slurm-extra", "--slurm-setup"):
            i += 1
            taken = 0
            while i < len(argv) and argv[i].split("=", 1)[0] not in _OWN_OPTIONS:
                out.append(f"{token}={argv[i]}")
                i += 1
                taken += 1
            if not taken:
                out.append(token)  # argparse reports the missing value
            continue
        out.append(token)
        i += 1
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/sweep.py", description=USAGE,
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--status", metavar="OUT", help="print where the sweep in OUT stands and exit")
    p.add_argument("--base", help="the base config (its row is the full model)")
    p.add_argument("--overlays", nargs="*", default=[], metavar="YAML", help="one variant per overlay")
    p.add_argument("--no-base", action="store_true", help="no row for the base config alone")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides applied to every variant, e.g. train.iterations=20000")
    p.add_argument("--out", help="the sweep folder")
    p.add_argument("--launcher", default="local", help="local (this machine, default) or slurm")
    p.add_argument("--parallel", type=int, default=None,
                   help="local: variants running at a time (default 1)")
    p.add_argument("--gpus-per-node", type=int, default=0,
                   help="GPUs per variant, one DDP process each (default: 0, a single process)")
    p.add_argument("--max-requeues", type=int, default=20,
                   help="requeues after a time limit per job (preemptions do not count; default 20)")
    slurm = p.add_argument_group("Slurm (--launcher slurm)")
    slurm.add_argument("--partition")
    slurm.add_argument("--nodes", type=int, help="nodes per variant (DDP across them)")
    slurm.add_argument("--cpus-per-task", type=int)
    slurm.add_argument("--time", help="time limit per job: minutes or [D-]HH:MM[:SS]; a job is "
                                      "signalled --signal-delay seconds before it, saves, and is requeued")
    slurm.add_argument("--mem", help="memory per node, e.g. 64G")
    slurm.add_argument("--array-parallelism", type=int, help="array tasks running at a time")
    slurm.add_argument("--slurm-extra", action="append", default=[], metavar="SBATCH_OPTION",
                       help="extra #SBATCH lines, e.g. --slurm-extra --constraint=a100 --qos=high")
    slurm.add_argument("--slurm-setup", action="append", default=[], metavar="SHELL_LINE",
                       help="shell lines run before the job, e.g. 'module load cuda'")
    slurm.add_argument("--signal-delay", type=int, dest="signal_delay", metavar="SECONDS",
                       help="USR2 this long before the time limit (default 90): time to finish the "
                            "iteration and save")
    slurm.add_argument("--dry-run", action="store_true",
                       help="print the sbatch file of the array and submit nothing")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from xinggan.sweep.launch import LaunchOptions, run_sweep, show_status

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(_respell(argv))
    try:
        if args.status:
            if args.base or args.overlays or args.out:
                raise SweepError("--status OUT takes no other options")
            return show_status(args.status)
        if not args.base or not args.out:
            raise SweepError("--base and --out are required (or --status OUT)")
        opts = LaunchOptions(
            launcher=args.launcher, parallel=args.parallel or 1, gpus_per_node=args.gpus_per_node,
            max_requeues=args.max_requeues, partition=args.partition, nodes=args.nodes,
            cpus_per_task=args.cpus_per_task, time=args.time, mem=args.mem,
            array_parallelism=args.array_parallelism, slurm_extra=args.slurm_extra,
            slurm_setup=args.slurm_setup, signal_delay_s=args.signal_delay, dry_run=args.dry_run)
        given = [name for name, value in (
            ("--partition", args.partition), ("--nodes", args.nodes),
            ("--cpus-per-task", args.cpus_per_task), ("--time", args.time), ("--mem", args.mem),
            ("--array-parallelism", args.array_parallelism), ("--slurm-extra", args.slurm_extra or None),
            ("--slurm-setup", args.slurm_setup or None), ("--signal-delay", args.signal_delay),
            ("--dry-run", args.dry_run or None), ("--parallel", args.parallel)) if value is not None]
        return run_sweep(args.base, args.overlays, args.out, args.set, not args.no_base, opts, given)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
