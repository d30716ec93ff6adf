"""One variant of a sweep as a submitit job: train (``train.py --resume``), then score (``test.py``).

:class:`VariantJob` is what the sweep submits, on this machine (submitit's local executor) or on
Slurm. Each task of the job runs ``train.py`` as a child process with the variant's resolved
config and ``--resume``, so a job that starts again (requeued, or the sweep started again)
continues from ``<run>/checkpoints/latest.pt``; a job of several tasks (one per GPU) gives each
child the ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT`` that
``torchrun`` would, and ``train.py`` runs DistributedDataParallel as it does under torchrun.
Task 0 then scores the checkpoint with ``test.py`` (the base's evaluation protocol) and records
the metrics.

Stop signals. The trainer saves and exits cleanly on SIGTERM / SIGINT at the end of the current
iteration (:class:`xinggan.training.Trainer`). The job cooperates with it and with submitit:

* SIGUSR2 -- what Slurm sends ``--signal-delay`` seconds before the time limit (and on preemption
  where the cluster sets ``preempt_send_user_signal``), and what submitit's local controller sends
  before its timeout: the job passes SIGTERM to ``train.py``, waits until it has saved and exited,
  records "waiting" and only then hands over to submitit's own handler, which calls
  :meth:`VariantJob.checkpoint` and requeues the job (``scontrol requeue`` on Slurm; a restart by
  the local controller). The requeued job resumes from the checkpoint. The child itself ignores
  SIGUSR2 (Slurm signals every process of the job step, and SIGUSR2 would otherwise kill it).
* SIGTERM / SIGINT -- a cancel, a preemption without the user signal, or the sweep command
  stopped: the job passes SIGTERM on, waits for the save, records "waiting" (the next start of the
  sweep, or Slurm's requeue of a preempted job, resumes it) and ends without requeueing itself.
* The children run in their own session and get SIGTERM if the job process dies, so a terminal's
  Ctrl-C reaches them only through the job, and none outlives its job by more than one save.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

import submitit

from xinggan.sweep.plan import (hostname, log_tail, read_definition, read_state, training_progress,
                                write_state)

__all__ = ["VariantFailed", "VariantJob", "distributed_env", "REPO"]

REPO = Path(__file__).resolve().parents[2]
_DIST_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # pragma: no cover - runs in the forked child before exec
    """In the child: ignore SIGUSR2 (the job handles it) and get SIGTERM when the job dies."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def distributed_env(job_env=None) -> dict:
    """torchrun's variables for this task of a multi-task job (empty for one task): the master is
    the job's first host, the port is drawn from the job id (the same after a requeue)."""
    job_env = job_env or submitit.JobEnvironment()
    if job_env.num_tasks <= 1:
        return {}
    dist = submitit.helpers.TorchDistributedEnvironment()
    return {"RANK": str(dist.rank), "LOCAL_RANK": str(dist.local_rank),
            "WORLD_SIZE": str(dist.world_size), "LOCAL_WORLD_SIZE": str(dist.local_world_size),
            "MASTER_ADDR": str(dist.master_addr), "MASTER_PORT": str(dist.master_port)}


def _saved_iteration(log: Path) -> int:
    """The iteration train.py last reported saving at ("stopped at" / "finished at iteration N"),
    from the end of its log; 0 when it said neither."""
    import re

    for line in reversed(log_tail(log, 40)):
        if line.startswith("$ "):
            break  # the start of the last run
        found = re.search(r"(?:stopped|finished) at iteration (\d+)", line)
        if found:
            return int(found.group(1))
    return 0


class VariantFailed(RuntimeError):
    """train.py or test.py failed; the state file says so already."""


class _Children:
    """Runs one child process at a time and turns stop signals into a SIGTERM to it."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)

    def __init__(self) -> None:
        self.signal: Optional[int] = None
        self.child: Optional[subprocess.Popen] = None
        self.previous = {sig: signal.signal(sig, self._on_signal) for sig in self.SIGNALS}

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if self.signal is None or self.signal != signal.SIGUSR2:
            self.signal = signum  # a requeue notice wins over a later stop signal
        print(f"job: signal {signal.Signals(signum).name}; stopping the current step", flush=True)
        self._stop_child()

    def _stop_child(self) -> None:
        child = self.child
        if child is not None:
            try:
                os.killpg(child.pid, signal.SIGTERM)  # its own session: the trainer's group
            except ProcessLookupError:
                pass

    def run(self, cmd: list, log: Path, env: dict, cwd: str) -> Optional[int]:
        """Run ``cmd`` to its end (its output appended to ``log``); None when a stop signal
        came before it started."""
        if self.signal is not None:
            return None
        with open(log, "ab") as handle:
            handle.write(f"\n$ {' '.join(cmd)}  # {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            handle.flush()
            self.child = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd,
                                          env=env, start_new_session=True, preexec_fn=_child_setup)
        if self.signal is not None:  # arrived while it was starting
            self._stop_child()
        while self.child.poll() is None:
            time.sleep(0.2)
        code = self.child.returncode
        self.child = None
        return code


class VariantJob(submitit.helpers.Checkpointable):
    """Train then score variant ``name`` of the sweep in folder ``out``."""

    def __init__(self, out: str, name: str) -> None:
        self.out = str(out)
        self.name = name

    def __repr__(self) -> str:
        return f"VariantJob({self.name!r} of {self.out})"

    # submitit calls checkpoint() (through its SIGUSR2 handler, which the job calls once the
    # trainer has saved) and requeues what it returns: the same job, which resumes.
    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(VariantJob(self.out, self.name), *args, **kwargs)

    def __call__(self) -> dict:
        job_env = submitit.JobEnvironment()
        rank = job_env.global_rank
        main = rank == 0
        out = Path(self.out)
        run_dir = out / self.name
        definition = read_definition(out)
        entry = next(v for v in definition["variants"] if v["name"] == self.name)
        total = int(entry["iterations"])
        cwd = definition.get("cwd") or os.getcwd()
        env = {k: v for k, v in os.environ.items() if k not in _DIST_KEYS}
        env.update(distributed_env(job_env))
        env["PYTHONUNBUFFERED"] = "1"
        children = _Children()
        usr2_handler = children.previous[signal.SIGUSR2]
        log = run_dir / ("train.log" if main else f"train.rank{rank}.log")
        try:
            if main:
                state = read_state(run_dir)
                write_state(run_dir, state="running", phase="training", job_id=job_env.job_id,
                            launcher=os.environ.get("SUBMITIT_EXECUTOR"),
                            host=hostname(), pid=os.getpid(), error=None, log_tail=None, note=None,
                            attempts=int(state.get("attempts", 0)) + 1, started=time.time(),
                            event=f"job {job_env.job_id} started on {hostname()}")
                print(f"job {job_env.job_id}: variant {self.name} in {run_dir}", flush=True)
            if not (read_state(run_dir).get("trained") and (run_dir / "checkpoints" / "latest.pt").is_file()):
                code = children.run([sys.executable, str(REPO / "train.py"), "--config",
                                     str(run_dir / "config.yaml"), "--run-dir", str(run_dir),
                                     "--resume", "--no-progress"], log, env, cwd)
                reached = max(training_progress(run_dir), _saved_iteration(log))
                if code is None or (code == 0 and reached < total) or (code != 0 and children.signal):
                    return self._stopped(children, usr2_handler, run_dir, main, reached, total, "training")
                if code != 0:
                    return self._failed(run_dir, main, f"train.py exited with status {code}", log)
                if main:
                    write_state(run_dir, trained=True, iteration=total, event=f"trained to iteration {total}")
            if not main:
                return {"variant": self.name, "rank": rank, "trained": True}
            write_state(run_dir, phase="scoring", iteration=total)
            test_log = run_dir / "test.log"
            # config.yaml on top of the checkpoint's: today's data and eval paths (the model is the same)
            code = children.run([sys.executable, str(REPO / "test.py"), "--checkpoint",
                                 str(run_dir / "checkpoints" / "latest.pt"), "--config",
                                 str(run_dir / "config.yaml"), "--out", str(run_dir / "results"),
                                 "--no-progress"], test_log, env, cwd)
            if code is None or children.signal is not None:
                return self._stopped(children, usr2_handler, run_dir, main, total, total, "scoring")
            if code != 0:
                return self._failed(run_dir, main, f"test.py exited with status {code}", test_log)
            metrics = json.loads((run_dir / "results" / "metrics.json").read_text())
            shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            write_state(run_dir, state="done", phase=None, iteration=total, metrics=shown,
                        skipped=metrics.get("skipped") or None, finished=time.time(), pid=None,
                        event="scored")
            from xinggan.sweep.launch import write_sweep_tables  # the last variant writes the tables

            write_sweep_tables(out, quiet=True)
            return {"variant": self.name, "metrics": shown}
        except (SystemExit, VariantFailed):
            raise  # submitit's requeue; a failure already recorded
        except submitit.core.utils.UncompletedJobError as exc:
            if main:
                write_state(run_dir, state="failed", error=f"not requeued: {exc}", pid=None)
            raise
        except BaseException as exc:
            if main:
                detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
                write_state(run_dir, state="failed", error=f"job error: {detail}", pid=None,
                            log_tail=traceback.format_exc().splitlines()[-15:])
            raise
        finally:
            children.restore()

    # -- endings ---------------------------------------------------------------------------
    def _failed(self, run_dir: Path, main: bool, message: str, log: Path) -> dict:
        tail = log_tail(log)
        if main:
            write_state(run_dir, state="failed", error=message, log_tail=tail, log=str(log), pid=None,
                        event=f"failed: {message}")
        raise VariantFailed(f"variant {self.name}: {message}; last lines of {log}:\n" + "\n".join(tail))

    def _stopped(self, children: _Children, usr2_handler, run_dir: Path, main: bool, reached: int,
                 total: int, phase: str) -> dict:
        sig = children.signal
        name = signal.Signals(sig).name if sig else "a signal to train.py"
        if sig == signal.SIGUSR2 and callable(usr2_handler):
            if main:
                note = f"requeued after {name} during {phase} at iteration {reached}/{total}"
                write_state(run_dir, state="waiting", iteration=reached, pid=None, note=note, event=note)
            print(f"job: {phase} stopped at iteration {reached}; handing over to submitit to requeue",
                  flush=True)
            usr2_handler(sig, None)  # submitit: checkpoint() and requeue; returns on other ranks
            return {"variant": self.name, "stopped": name, "iteration": reached}
        if main:
            note = f"stopped by {name} during {phase} at iteration {reached}/{total}"
            write_state(run_dir, state="waiting", iteration=reached, pid=None, event=note,
                        note=note + "; resumes when the sweep is started again")
        print(f"job: stopped by {name} at iteration {reached}", flush=True)
        return {"variant": self.name, "stopped": name, "iteration": reached}
