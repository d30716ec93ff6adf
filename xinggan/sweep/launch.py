"""Start a sweep's variants with submitit (this machine or Slurm), report where they stand, and
write the ablation table once every variant is scored.

Local launcher: each variant is a submitit job on this machine (``submitit.LocalExecutor``: a
controller process and one task process per GPU), ``--parallel`` of them at a time (1 by
default); the command waits for them, prints progress, and on Ctrl-C / SIGTERM asks every
running job to save and stop (the next start resumes them).

Slurm launcher: the variants still to run go in one job array (``--array-parallelism`` at a
time), each task with ``--gpus-per-node`` GPUs and as many tasks (DDP, one process per GPU),
``--requeue`` so that a preempted job comes back, and ``--signal=USR2@<signal delay>`` so that a
job near its time limit saves and is requeued by submitit. The command returns once the array is
queued; ``--status`` follows it.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from xinggan.sweep.plan import (SweepError, check_definition, definition, hostname,
                                log_tail, pid_alive, plan_variants, read_definition, read_state,
                                same_as_base, training_progress, write_definition, write_state)

__all__ = ["LaunchOptions", "check_options", "make_executor", "run_sweep", "sbatch_text",
           "slurm_parameters", "status_lines", "write_sweep_tables", "SLURM_OPTIONS"]

LOCAL_TIMEOUT_MIN = 60 * 24 * 365  # the local controller's time limit: none to speak of
# command-line spelling -> LaunchOptions field, for the options that only Slurm takes
SLURM_OPTIONS = {"--partition": "partition", "--nodes": "nodes", "--cpus-per-task": "cpus_per_task",
                 "--time": "time", "--mem": "mem", "--array-parallelism": "array_parallelism",
                 "--slurm-extra": "slurm_extra", "--slurm-setup": "slurm_setup",
                 "--signal-delay": "signal_delay_s", "--dry-run": "dry_run"}
TABLE_NAMES = ("ablation.md", "ablation.csv", "ablation.tex")


@dataclass
class LaunchOptions:
    launcher: str = "local"
    parallel: int = 1                       # local: variants at a time
    gpus_per_node: int = 0                  # both: GPUs per job, one task (DDP process) each
    max_requeues: int = 20                  # time-limit requeues per job (preemptions are free)
    # Slurm only (None: not given)
    partition: Optional[str] = None
    nodes: Optional[int] = None
    cpus_per_task: Optional[int] = None
    time: Optional[str] = None              # minutes, or [D-]HH:MM[:SS]
    mem: Optional[str] = None               # e.g. 64G, 500M
    array_parallelism: Optional[int] = None
    slurm_extra: list = field(default_factory=list)   # "--constraint=a100", ...
    slurm_setup: list = field(default_factory=list)   # shell lines before srun
    signal_delay_s: Optional[int] = None
    dry_run: bool = False
    poll_s: float = 2.0                     # local: how often the jobs are looked at
    progress_every_s: float = 30.0          # local: a progress line at most this often

    @property
    def tasks_per_node(self) -> int:
        return max(1, self.gpus_per_node)


def _slurm_minutes(text: str) -> int:
    """Slurm's time formats (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in minutes."""
    text = str(text).strip()
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        if not day_text.isdigit():
            raise ValueError(text)
        days = int(day_text)
    parts = text.split(":")
    if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        raise ValueError(text)
    numbers = [int(p) for p in parts]
    if days:  # D-HH[:MM[:SS]]
        numbers += [0] * (3 - len(numbers))
        hours, minutes, seconds = numbers
    elif len(numbers) == 1:
        hours, minutes, seconds = 0, numbers[0], 0
    elif len(numbers) == 2:
        hours, minutes, seconds = 0, numbers[0], numbers[1]
    else:
        hours, minutes, seconds = numbers
    total = days * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    if total <= 0:
        raise ValueError(text)
    return total


def _extra_parameters(lines: Sequence[str]) -> dict:
    """``--constraint=a100`` / ``qos=high`` / ``#SBATCH --qos high`` / ``--exclusive`` ->
    {option name: value, or True for a flag}."""
    extra = {}
    for line in lines:
        text = line.strip()
        if text.startswith("#SBATCH"):
            text = text[len("#SBATCH"):].strip()
        if text.startswith("--"):
            text = text[2:]
        name, _, value = text.partition("=")
        if not value and " " in name:
            name, value = name.split(None, 1)
        if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
            raise SweepError(f"--slurm-extra {line!r}: expected an sbatch option such as "
                             "--constraint=a100 or --qos=high")
        if name in ("array", "output", "error", "ntasks-per-node", "signal", "open-mode"):
            raise SweepError(f"--slurm-extra {line!r}: --{name} is set by the sweep itself")
        extra[name] = value.strip() if value else True
    return extra


def check_options(opts: LaunchOptions, given: Sequence[str] = ()) -> None:
    """Refuse, before anything runs, what cannot be launched: an unknown launcher, Slurm options
    without ``--launcher slurm`` (``given``: the option names on the command line), bad values."""
    if opts.launcher not in ("local", "slurm"):
        raise SweepError(f"--launcher {opts.launcher!r}: unknown launcher; choose local or slurm")
    if opts.launcher != "slurm":
        used = [name for name in SLURM_OPTIONS if name in given]
        if used:
            raise SweepError(f"{', '.join(used)}: Slurm option(s) given without --launcher slurm")
    elif "--parallel" in given:
        raise SweepError("--parallel: local option; with --launcher slurm use --array-parallelism")
    for name, value in (("--parallel", opts.parallel), ("--nodes", opts.nodes),
                        ("--cpus-per-task", opts.cpus_per_task),
                        ("--array-parallelism", opts.array_parallelism)):
        if value is not None and value < 1:
            raise SweepError(f"{name} {value}: must be at least 1")
    if opts.gpus_per_node < 0:
        raise SweepError(f"--gpus-per-node {opts.gpus_per_node}: must be 0 or more")
    if opts.max_requeues < 0:
        raise SweepError(f"--max-requeues {opts.max_requeues}: must be 0 or more")
    if opts.signal_delay_s is not None and opts.signal_delay_s < 0:
        raise SweepError(f"--signal-delay {opts.signal_delay_s}: must be 0 or more seconds")
    if opts.time is not None:
        try:
            _slurm_minutes(opts.time)
        except ValueError:
            raise SweepError(f"--time {opts.time!r}: expected minutes or [D-]HH:MM[:SS]") from None
    if opts.mem is not None and not re.fullmatch(r"\d+(\.\d+)?[KMGT]?B?", str(opts.mem), re.IGNORECASE):
        raise SweepError(f"--mem {opts.mem!r}: expected a size such as 64G or 500M")
    _extra_parameters(opts.slurm_extra)


def slurm_parameters(opts: LaunchOptions, job_name: str) -> dict:
    """The parameters of ``submitit.SlurmExecutor.update_parameters`` for these options."""
    params = {"job_name": job_name, "nodes": opts.nodes or 1, "ntasks_per_node": opts.tasks_per_node,
              "signal_delay_s": 90 if opts.signal_delay_s is None else opts.signal_delay_s,
              "additional_parameters": {"requeue": True, **_extra_parameters(opts.slurm_extra)}}
    if opts.gpus_per_node:
        params["gpus_per_node"] = opts.gpus_per_node
    if opts.partition:
        params["partition"] = opts.partition
    if opts.cpus_per_task:
        params["cpus_per_task"] = opts.cpus_per_task
    if opts.time is not None:
        params["time"] = _slurm_minutes(opts.time)
    if opts.mem is not None:
        mem = str(opts.mem).upper()
        params["mem"] = mem[:-1] if mem.endswith("B") and mem[-2:-1].isalpha() else mem
    if opts.array_parallelism:
        params["array_parallelism"] = opts.array_parallelism
    if opts.slurm_setup:
        params["setup"] = list(opts.slurm_setup)
    return params


def _slurm_executor_class(check_srun: bool = True):
    import submitit

    if check_srun:
        return submitit.SlurmExecutor

    class PreviewSlurmExecutor(submitit.SlurmExecutor):
        """Writes sbatch text only: no srun is needed where it is built."""

        @classmethod
        def affinity(cls) -> int:
            return 2

    return PreviewSlurmExecutor


def make_executor(out: Path, opts: LaunchOptions, check_srun: bool = True):
    import submitit

    folder = Path(out) / "submitit"  # <job id>_submitted.pkl, <job id>_<task>_log.out...
    if opts.launcher == "local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=opts.max_requeues)
        executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, tasks_per_node=opts.tasks_per_node,
                                   gpus_per_node=opts.gpus_per_node,
                                   signal_delay_s=opts.signal_delay_s or 30)
        return executor
    try:
        executor = _slurm_executor_class(check_srun)(folder=folder, max_num_timeout=opts.max_requeues)
    except RuntimeError as exc:
        raise SweepError(f"--launcher slurm: {exc} (srun is not on PATH here)") from None
    try:
        executor.update_parameters(**slurm_parameters(opts, f"sweep-{Path(out).name}"))
    except ValueError as exc:
        raise SweepError(f"Slurm options: {str(exc).splitlines()[0]}") from None
    return executor


def sbatch_text(out: Path, opts: LaunchOptions, count: int) -> str:
    """The sbatch file a Slurm submission of ``count`` variants writes (an array from 2 on)."""
    from submitit.slurm.slurm import _make_sbatch_string

    executor = make_executor(out, opts, check_srun=False)
    params = dict(executor.parameters)
    if count > 1:
        params["map_count"] = count
    return _make_sbatch_string(command=executor._submitit_command_str, folder=executor.folder, **params)


# -- where the variants stand ----------------------------------------------------------------------


def _local_job_alive(state: dict) -> bool:
    job = str(state.get("job_id", ""))
    if state.get("launcher") != "local" or state.get("host") not in (None, hostname()) or not job.isdigit():
        return False
    if not pid_alive(int(job)):
        return False
    try:
        return b"submitit" in Path(f"/proc/{job}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: the process exists, trust it


def _slurm_jobs_alive(ids: Sequence[str]) -> set:
    if not ids:
        return set()
    try:
        run = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SweepError(f"cannot ask Slurm which jobs are queued (squeue: {exc})") from None
    if run.returncode != 0:
        raise SweepError(f"cannot ask Slurm which jobs are queued (squeue: {run.stderr.strip()})")
    queued = set(run.stdout.split())
    return {i for i in ids if i in queued}


def live_variants(out: Path, names: Sequence[str]) -> dict:
    """name -> job id of the variants whose recorded job is still queued or running."""
    states = {n: read_state(Path(out) / n) for n in names}
    live = {}
    slurm = {n: str(s["job_id"]) for n, s in states.items()
             if s.get("state") in ("waiting", "running") and s.get("launcher") == "slurm" and s.get("job_id")}
    alive_ids = _slurm_jobs_alive(list(slurm.values())) if slurm else set()
    for n, s in states.items():
        if s.get("state") not in ("waiting", "running"):
            continue
        if (n in slurm and slurm[n] in alive_ids) or _local_job_alive(s):
            live[n] = str(s.get("job_id"))
    return live


def _metric_text(state: dict, run_dir: Path) -> str:
    from xinggan.metrics.report import METRIC_LABELS
    from xinggan.metrics.protocols import TABLE_ORDER

    metrics = state.get("metrics") or {}
    shown = [f"{METRIC_LABELS[m]} {metrics[m]:.3f}" for m in TABLE_ORDER if m in metrics]
    return "  ".join(shown) or f"(see {run_dir / 'results' / 'metrics.md'})"


def status_lines(out: Path, tail: int = 5) -> list[str]:
    """One line per variant: state, iteration / total, metrics or what it is doing; a failed
    variant's error and the last lines of its log follow, indented."""
    out = Path(out)
    data = read_definition(out)
    names = [v["name"] for v in data["variants"]]
    width = max(len(n) for n in names)
    lines = [f"sweep {out}: base {data['base']}, {len(names)} variant(s)"]
    counts: dict = {}
    for entry in data["variants"]:
        name, total = entry["name"], int(entry["iterations"])
        run_dir = out / name
        state = read_state(run_dir)
        kind = state.get("state", "waiting")
        done = total if kind == "done" else min(training_progress(run_dir), total)
        detail = ""
        if kind == "done":
            detail = _metric_text(state, run_dir)
        elif kind == "running":
            where = f"job {state.get('job_id', '?')}"
            if state.get("pid"):
                where += f", pid {state['pid']} on {state.get('host', '?')}"
            detail = f"{state.get('phase', 'training')}, {where}"
            if state.get("launcher") == "local" and state.get("host") == hostname() and state.get("pid") \
                    and not pid_alive(state["pid"]):
                kind, detail = "waiting", "its job is gone; starting the sweep again resumes it"
        elif kind == "failed":
            detail = state.get("error", "failed")
            if state.get("log"):
                detail += f" (log {state['log']})"
        else:
            detail = state.get("note", "")
            if state.get("job_id") and "job" not in detail:
                detail = (detail + "; " if detail else "") + f"job {state['job_id']} ({state.get('launcher', '?')})"
        counts[kind] = counts.get(kind, 0) + 1
        lines.append(f"{name:<{width}}  {kind:<7}  {done:>{len(str(total))}}/{total}  {detail}".rstrip())
        if kind == "failed":
            lines += [f"{'':<{width}}  | {line}" for line in (state.get("log_tail") or [])[-tail:]]
    summary = ", ".join(f"{counts[k]} {k}" for k in ("done", "running", "waiting", "failed") if k in counts)
    lines.append(summary)
    if counts.get("done") == len(names):
        lines.append("tables: " + ", ".join(str(out / n) for n in TABLE_NAMES))
    return lines


def sweep_table(out: Path):
    """The ablation :class:`xinggan.tables.Table` of a sweep whose variants are all scored, else None."""
    from xinggan.metrics.report import METRIC_LABELS
    from xinggan.metrics.protocols import TABLE_ORDER, get_protocol
    from xinggan.tables import METRIC_DIRECTIONS, Column, Row, Table

    out = Path(out)
    data = read_definition(out)
    results = {}
    for entry in data["variants"]:
        if read_state(out / entry["name"]).get("state") != "done":
            return None
        path = out / entry["name"] / "results" / "metrics.json"
        try:
            results[entry["name"]] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
    first = data["variants"][0]["config"]
    protocol = get_protocol(first["eval"]["protocol"])
    wanted = list(first["eval"]["metrics"]) or list(protocol.default_metrics)
    metrics = [m for m in TABLE_ORDER if m in wanted]
    base_name = Path(data["base"]).stem
    any_result = next(iter(results.values()))
    table = Table(
        f"Ablation of {base_name} (protocol {protocol.name})", ["variant"],
        [Column(m, METRIC_LABELS[m], METRIC_DIRECTIONS.get(m)) for m in metrics],
        description=("Rows: " + (f"{base_name} (the base config), then " if data["variants"][0]["overlay"] is None
                                 else "") + f"{base_name} with one overlay each; every variant trained for "
                     f"{data['variants'][0]['iterations']:,} iterations and scored under protocol "
                     f"{protocol.name} on {any_result.get('num_pairs', '?')} test pairs"))
    for entry in data["variants"]:
        r = results[entry["name"]]
        label = f"{entry['name']} ({base_name})" if entry["overlay"] is None else entry["name"]
        cells = {m: r[m] if m in r else "not run" if m in r.get("skipped", {}) else None for m in metrics}
        table.rows.append(Row([label], cells))
        table.notes.append(f"- {label}: " + (f"`{entry['overlay']}` over `{data['base']}`"
                                               if entry["overlay"] else f"`{data['base']}`")
                           + f"; run `{out / entry['name']}`")
    if data.get("sets"):
        table.notes.append("- every variant with --set " + " ".join(f"`{s}`" for s in data["sets"]))
    return table


def write_sweep_tables(out: Path, quiet: bool = False) -> list:
    """Write ``ablation.md``, ``.csv`` and ``.tex`` when every variant is scored; the paths."""
    from xinggan.tables import write_tables

    table = sweep_table(out)
    if table is None:
        return []
    paths = write_tables([table], [Path(out) / n for n in TABLE_NAMES])
    if not quiet:
        print("wrote " + ", ".join(str(p) for p in paths))
    return paths


# -- the driver --------------------------------------------------------------------------------------


def _repo_on_pythonpath() -> None:
    """The jobs unpickle xinggan.sweep.job.VariantJob: make the package importable there."""
    from xinggan.sweep.job import REPO

    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO) not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO)] + parts)


class _Stop:
    """The driver's SIGINT / SIGTERM handler: the first asks running jobs to save and stop."""

    def __init__(self) -> None:
        self.requested = False
        self.jobs: dict = {}
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested:
            print("sweep: already stopping; the running variants are saving", flush=True)
            return
        self.requested = True
        print(f"\nsweep: {signal.Signals(signum).name}: asking {len(self.jobs)} running job(s) to save "
              "and stop; start the sweep again to resume", flush=True)
        for job in self.jobs.values():
            process = getattr(job, "_process", None)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)  # the controller passes it to its tasks


def _submit_quietly(executor, job):
    """Submit with SIGINT ignored, which the controller process inherits: a terminal's Ctrl-C
    then reaches the jobs only through the driver (save, then stop), never as a kill."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return executor.submit(job)
    finally:
        signal.signal(signal.SIGINT, previous)


def local_gpus() -> list:
    """The GPUs this machine shows (ids as ``CUDA_VISIBLE_DEVICES`` names them)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [x.strip() for x in visible.split(",") if x.strip()]
        if not all(x.isdigit() for x in ids):
            raise SweepError(f"CUDA_VISIBLE_DEVICES={visible}: the local launcher hands GPUs to its jobs "
                             "by number; give the GPUs as numbers")
        return [int(x) for x in ids]
    import torch

    return list(range(torch.cuda.device_count()))


def gpu_groups(gpus: Sequence[int], per_job: int) -> list:
    """The GPUs split into groups of ``per_job`` (one group per concurrent local job)."""
    if per_job <= 0 or not gpus:
        return []
    return [list(gpus[i:i + per_job]) for i in range(0, len(gpus) - per_job + 1, per_job)]


def _run_local(out: Path, names: Sequence[str], opts: LaunchOptions, totals: dict) -> bool:
    """Run ``names`` as local submitit jobs, ``opts.parallel`` at a time, each on its own group
    of GPUs where there are some (a job of ``--gpus-per-node`` 0 gets one GPU and one process);
    False when stopped."""
    from xinggan.sweep.job import VariantJob

    executor = make_executor(out, opts)
    groups = gpu_groups(local_gpus(), max(1, opts.gpus_per_node))
    if groups and opts.parallel > len(groups):
        print(f"note: {opts.parallel} variants at a time on {len(groups)} group(s) of "
              f"{len(groups[0])} GPU(s): some will share", flush=True)
    in_use: dict = {}  # name -> index of its GPU group
    pending = list(names)
    seen_state: dict = {}
    last_progress, last_line = time.monotonic(), ""
    with _Stop() as stop:
        while stop.jobs or (pending and not stop.requested):
            while pending and len(stop.jobs) < opts.parallel and not stop.requested:
                name = pending.pop(0)
                write_state(out / name, state="waiting", launcher="local", job_id=None, pid=None,
                            submitted=time.time(), note="submitted")
                if groups:  # the least busy group; CUDA_VISIBLE_DEVICES of the job is set to it
                    index = min(range(len(groups)), key=lambda i: (list(in_use.values()).count(i), i))
                    in_use[name] = index
                    executor.update_parameters(visible_gpus=groups[index], gpus_per_node=len(groups[index]))
                job = _submit_quietly(executor, VariantJob(str(out), name))
                if read_state(out / name).get("state") != "running":  # unless the job is quicker
                    write_state(out / name, job_id=str(job.job_id), host=hostname())
                stop.jobs[name] = job
                print(f"{name}: started (local job {job.job_id}, log {out / name / 'train.log'})", flush=True)
            time.sleep(opts.poll_s)
            for name, job in list(stop.jobs.items()):
                state = read_state(out / name)
                key = (state.get("state"), state.get("phase"), state.get("attempts"), state.get("note"))
                if seen_state.get(name) != key:
                    seen_state[name] = key
                    if state.get("state") == "waiting" and state.get("note", "").startswith("requeued"):
                        print(f"{name}: {state['note']}", flush=True)
                    elif state.get("state") == "running" and state.get("phase") == "scoring":
                        print(f"{name}: trained; scoring", flush=True)
                if job.done():
                    _finish_local(out, name, job)
                    del stop.jobs[name]
                    in_use.pop(name, None)
            if time.monotonic() - last_progress >= opts.progress_every_s and stop.jobs:
                last_progress = time.monotonic()
                line = "  ".join(f"{n}: {training_progress(out / n)}/{totals[n]}" for n in stop.jobs)
                if line != last_line:  # iterations come from stats.jsonl, every train.log_every
                    print(line, flush=True)
                    last_line = line
        return not stop.requested


def _finish_local(out: Path, name: str, job) -> None:
    state = read_state(out / name)
    kind = state.get("state")
    if kind == "running":  # the job ended without saying how: killed, or it could not start
        tail = log_tail(Path(job.paths.stderr)) or log_tail(Path(job.paths.stdout))
        state = write_state(out / name, state="failed", pid=None, log=str(job.paths.stderr),
                            error=f"job {job.job_id} ended without a result", log_tail=tail)
        kind = "failed"
    if kind == "done":
        print(f"{name}: done  {_metric_text(state, out / name)}", flush=True)
    elif kind == "failed":
        print(f"{name}: FAILED: {state.get('error', '')}", flush=True)
        for line in (state.get("log_tail") or [])[-5:]:
            print(f"  | {line}", flush=True)
    else:
        print(f"{name}: {state.get('note', kind)}", flush=True)


def _run_slurm(out: Path, names: Sequence[str], opts: LaunchOptions) -> None:
    from xinggan.sweep.job import VariantJob

    executor = make_executor(out, opts)
    with executor.batch():
        jobs = [executor.submit(VariantJob(str(out), name)) for name in names]
    for name, job in zip(names, jobs):
        if read_state(out / name).get("state") != "running":  # unless the job is quicker
            write_state(out / name, state="waiting", launcher="slurm", job_id=str(job.job_id),
                        host=None, pid=None, submitted=time.time(), note="queued")
    first = str(jobs[0].job_id).split("_")[0]
    kind = f"array job {first} ({len(jobs)} tasks)" if len(jobs) > 1 else f"job {first}"
    print(f"submitted {kind} to Slurm; sbatch file and job logs in {out / 'submitit'}")


def run_sweep(base: str, overlays: Sequence[str], out: str, sets: Sequence[str] = (),
              include_base: bool = True, opts: Optional[LaunchOptions] = None,
              given: Sequence[str] = ()) -> int:
    """Plan, check and launch a sweep (see the module docstring); the exit status."""
    opts = opts or LaunchOptions()
    check_options(opts, given)
    variants = plan_variants(base, overlays, sets, include_base)
    out_path = Path(out).absolute()
    repeats = same_as_base(variants)
    for v in repeats:
        print(f"note: {v.overlay} changes nothing in {base} (with the --set values): not run, its row "
              "would repeat the base's")
    variants = [v for v in variants if v not in repeats]
    overlays = [v.overlay for v in variants if v.overlay is not None]
    data = definition(base, overlays, sets, variants, os.getcwd())
    existing = check_definition(out_path, data)
    if opts.dry_run:
        print(f"dry run: {len(variants)} variant(s): {', '.join(v.name for v in variants)}; the sbatch "
              "file of their job array:\n")
        print(sbatch_text(out_path, opts, len(variants)))
        return 0
    if opts.launcher == "local" and opts.gpus_per_node > len(local_gpus()):
        raise SweepError(f"--gpus-per-node {opts.gpus_per_node}: this machine shows {len(local_gpus())} GPU(s)")
    if opts.launcher == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise SweepError("--launcher slurm: sbatch / srun are not on PATH here; run the sweep on a "
                         "Slurm login node (or preview the job array with --dry-run)")
    if existing and data.get("cwd") != read_definition(out_path).get("cwd"):
        data["cwd"] = read_definition(out_path)["cwd"]  # the jobs keep running where they started
    with _driver_lock(out_path):
        write_definition(out_path, data, variants)
        return _launch(out_path, out, variants, opts)


@contextlib.contextmanager
def _driver_lock(out: Path):
    """One sweep command at a time per folder: a second would launch the variants the first
    still has queued."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / "sweep.lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise SweepError(f"--out {out}: another scripts/sweep.py (pid {holder}) is running this sweep; "
                             f"follow it with --status {out}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def _launch(out_path: Path, out: str, variants: Sequence, opts: LaunchOptions) -> int:
    states = {v.name: read_state(out_path / v.name) for v in variants}
    unfinished = [v.name for v in variants if states[v.name].get("state") != "done"]
    live = live_variants(out_path, unfinished)
    to_run = [n for n in unfinished if n not in live]
    done = len(variants) - len(unfinished)
    print(f"sweep {out_path}: {len(variants)} variant(s); {done} done, {len(live)} running elsewhere, "
          f"{len(to_run)} to run on {opts.launcher}" + (f" ({', '.join(to_run)})" if to_run else ""))
    for name in live:
        print(f"{name}: job {live[name]} is still running it; not started again")
    for name in to_run:
        if states[name].get("state") == "failed":
            print(f"{name}: failed before ({states[name].get('error', '')}); trying again, resuming its checkpoint")
    if to_run:
        _repo_on_pythonpath()
        if opts.launcher == "slurm":
            _run_slurm(out_path, to_run, opts)
            print(f"follow with: python scripts/sweep.py --status {out}")
            return 0
        finished = _run_local(out_path, to_run, opts, {v.name: v.iterations for v in variants})
        print("\n".join(status_lines(out_path)))
        write_sweep_tables(out_path)
        if not finished:
            print("stopped: the interrupted variants saved their checkpoints; run the same command again to resume")
            return 130
    else:
        print("\n".join(status_lines(out_path)))
        write_sweep_tables(out_path)
    final = [read_state(out_path / v.name).get("state") for v in variants]
    return 1 if "failed" in final else 0


def show_status(out: str) -> int:
    out_path = Path(out)
    print("\n".join(status_lines(out_path)))
    if not all((out_path / name).is_file() for name in TABLE_NAMES):
        write_sweep_tables(out_path)  # the jobs write them; a sweep copied without them
    return 0

