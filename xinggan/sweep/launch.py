"""Launch the variants not scored yet. Slurm: one job array trains them (one task per GPU,
``--requeue``, SIGUSR2 ``--signal-delay`` seconds before ``--time``), and each is scored in a
1-GPU job once its training succeeded (``afterok``); the command returns once all are queued.
Local: the same jobs one after another; the command waits, Ctrl-C or SIGTERM saves and stops."""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import submitit
import torch

from xinggan.sweep.ablation import (LOCK, RECORD, SweepError, definition, plan_variants, read_json,
                                    status_lines, trained, update_record, variant_state, write_definition)
from xinggan.sweep.jobs import VariantJob


def local_gpus() -> list[int]:
    """This machine's GPUs, numbered as ``CUDA_VISIBLE_DEVICES`` names them."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(torch.cuda.device_count()))))
    if not all(x.strip().isdigit() for x in visible.split(",") if x.strip()):
        raise SweepError(f"CUDA_VISIBLE_DEVICES={visible}: the local launcher needs GPU numbers")
    return [int(x) for x in visible.split(",") if x.strip()]


def run_sweep(args) -> int:
    """Plan, check and launch (see the module docstring); the exit status."""
    variants = plan_variants(args.base, args.overlays, args.set)
    for v in [v for v in variants[1:] if v.config == variants[0].config]:
        print(f"note: {v.overlay} changes nothing in {args.base}: not run (its row would repeat the base's)")
        variants.remove(v)
    out = Path(args.out).absolute()
    data = definition(out, args.base, args.set, variants)
    gpus = local_gpus() if args.launcher == "local" else []
    if args.launcher == "local" and (args.gpus_per_node or 0) > len(gpus):
        raise SweepError(f"--gpus-per-node {args.gpus_per_node}: this machine shows {len(gpus)} GPU(s)")
    if args.launcher == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise SweepError("--launcher slurm: sbatch and srun are not on PATH; run on a Slurm login node")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "w") as lock:
        try:  # one command per sweep at a time: a second would launch what the first runs
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SweepError(f"--out {out}: another scripts/sweep.py is running this sweep") from None
        write_definition(out, data, variants)
        todo = [v.name for v in variants if "metrics" not in read_json(out / v.name / RECORD)]
        live = _live(out, todo) if args.launcher == "slurm" else []
        todo = [n for n in todo if n not in live]
        print(f"sweep {out}: {len(variants)} variant(s); {len(variants) - len(todo) - len(live)} done, "
              f"{len(live)} queued or running, {len(todo)} to run {' '.join(todo)}".rstrip())
        totals = {v.name: v.config.train.iterations for v in variants}
        if args.launcher == "slurm":
            try:
                _submit_slurm(out, todo, args, totals, variants[0].config.data.num_workers + 2)
            except RuntimeError as exc:  # sbatch refused (submitit printed what it said)
                raise SweepError(f"sbatch failed: {(str(exc).strip() or repr(exc)).splitlines()[-1]}") from None
            print(f"follow with: python scripts/sweep.py --status {args.out}")
            return 0
        finished = _run_local(out, todo, args, totals, gpus)
    lines = status_lines(out) + ([] if finished else ["stopped: the job saved; the same command resumes it"])
    print("\n".join(lines))
    return 130 if not finished else 0 if lines[-1].startswith("tables: ") else 1


def _live(out: Path, names: list[str]) -> list[str]:
    """The variants with a Slurm job still queued or running."""
    queued = set(subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True,
                                timeout=60).stdout.split())
    return [n for n in names if {read_json(out / n / RECORD).get(k) for k in ("train_job", "score_job")} & queued]


def _submit_slurm(out: Path, todo: list[str], args, totals: dict, cpus: int) -> None:
    """The training array, then a scoring job per variant that waits for its training job."""
    extra = {"requeue": True, **dict(args.slurm_extra or ())}
    executor = submitit.SlurmExecutor(folder=out / "submitit", max_num_timeout=args.max_requeues)
    executor.update_parameters(
        job_name=f"sweep-{out.name}", time=args.time, cpus_per_task=args.cpus_per_task or cpus, mem=args.mem,
        partition=args.partition, signal_delay_s=args.signal_delay or 90, nodes=args.nodes or 1,
        ntasks_per_node=max(1, args.gpus_per_node), gpus_per_node=args.gpus_per_node or None,
        array_parallelism=args.array_parallelism or len(todo), additional_parameters=extra)
    names = [n for n in todo if not trained(out / n, totals[n])]
    jobs = executor.submit_array([VariantJob(str(out), n, "train") for n in names]) if names else []
    ids = {n: str(j.job_id) for n, j in zip(names, jobs)}
    executor.update_parameters(nodes=1, ntasks_per_node=1, gpus_per_node=min(1, args.gpus_per_node) or None)
    for name in todo:
        after = {"dependency": f"afterok:{ids[name]}", "kill_on_invalid_dep": "yes"} if name in ids else {}
        executor.update_parameters(additional_parameters={**extra, **after})
        job = executor.submit(VariantJob(str(out), name, "score"))
        update_record(out / name, launcher="slurm", train_job=ids.get(name), score_job=str(job.job_id),
                      error=None, log=None, tail=None)
        print(f"{name}: " + (f"train job {ids[name]}, then " if name in ids else "") + f"score job {job.job_id}")


def _run_local(out: Path, todo: list[str], args, totals: dict, gpus: list[int]) -> bool:
    """Train then score each variant with submitit's local executor, one job at a time, on the
    first ``--gpus-per-node`` GPUs (default 1); False when stopped."""
    executor = submitit.LocalExecutor(folder=out / "submitit", max_num_timeout=args.max_requeues)
    per_job = min(1, len(gpus)) if args.gpus_per_node is None else args.gpus_per_node
    running, stopped = [], []

    def stop(signum, frame) -> None:  # a local job's id is its controller's pid; the controller
        if not stopped:  # passes SIGTERM to the job, the job to train.py, which saves and exits
            print(f"\n{signal.Signals(signum).name}: the running job saves and stops", flush=True)
            for job in running:
                os.kill(int(job.job_id), signal.SIGTERM)
        stopped.append(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for name, step in [(n, s) for n in todo for s in ("train", "score")]:
            if stopped or trained(out / name, totals[name]) != (step == "score"):
                continue
            n = per_job if step == "train" else min(1, per_job)
            executor.update_parameters(timeout_min=60 * 24 * 365, tasks_per_node=max(1, n),  # no time limit
                                       gpus_per_node=n, visible_gpus=gpus[:n])
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the job: a terminal's Ctrl-C
            running[:] = [executor.submit(VariantJob(str(out), name, step))]  # reaches train.py only
            signal.signal(signal.SIGINT, stop)
            update_record(out / name, launcher="local", error=None, log=None, tail=None,
                          **{f"{step}_job": running[0].job_id})
            print(f"{name}: {step} job {running[0].job_id} (log {out / name / (step + '.log')})", flush=True)
            while not running[0].done():
                time.sleep(0.5)
            error = running[0].exception()  # a job that failed before its step could say why
            if error and variant_state(out / name, totals[name])[0] not in ("failed", "stopped"):
                update_record(out / name, error=str(error).strip().splitlines()[-1], log=str(running[0].paths.stderr))
            print(f"{name}: " + "  ".join(map(str, variant_state(out / name, totals[name])[::2])), flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return not stopped
