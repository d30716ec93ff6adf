"""One step of a variant as a submitit job: ``train`` runs ``train.py --resume`` in each task (with
torchrun's variables: DDP, one task per GPU), ``score`` runs ``test.py`` and records the metrics.

``train.py`` saves and exits 0 on SIGTERM, SIGUSR1 or SIGUSR2. On SIGUSR2 (Slurm's ``--signal``
before the time limit) submitit calls :meth:`VariantJob.checkpoint`, which passes it to the
child, waits for it to exit and gives submitit the same step to requeue; SIGTERM is passed on.
A training job that stops before the last iteration fails, so its scoring job never runs.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import submitit

from xinggan.sweep.ablation import write_ablation_tables
from xinggan.sweep.variants import STATUS, read_definition, read_json, trained, update_record

REPO = Path(__file__).resolve().parents[2]


def distributed_env() -> dict:
    """torchrun's variables for this task of a job of several (none for one task); the port,
    drawn from the job id, is the same after a requeue."""
    if submitit.JobEnvironment().num_tasks <= 1:
        return {}
    d = submitit.helpers.TorchDistributedEnvironment()
    return {k: str(v) for k, v in (("RANK", d.rank), ("LOCAL_RANK", d.local_rank), ("WORLD_SIZE", d.world_size),
                                   ("MASTER_ADDR", d.master_addr), ("MASTER_PORT", d.master_port))}


def log_tail(path: Path, lines: int = 5) -> list[str]:
    try:
        text = path.read_bytes()[-(1 << 16):].decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


class VariantFailed(RuntimeError):
    """A step of a variant did not finish; the variant's record says why."""


class VariantJob(submitit.helpers.Checkpointable):
    """Step ``step`` ("train" or "score") of variant ``name`` of the sweep in ``out``."""

    def __init__(self, out: str, name: str, step: str) -> None:
        self.out, self.name, self.step = str(out), name, step
        self._child, self._code = None, None

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """Submitit's SIGUSR2 handler calls this: stop the child, then requeue the step."""
        if self._child is not None and self._code is None:
            os.kill(self._child.pid, signal.SIGUSR2)
            while self._code is None:
                time.sleep(0.1)
        return submitit.helpers.DelayedSubmission(VariantJob(self.out, self.name, self.step))

    def __call__(self):
        run, data = Path(self.out) / self.name, read_definition(Path(self.out))
        total = next(int(v["iterations"]) for v in data["variants"] if v["name"] == self.name)
        if self.step == "train":
            rank = submitit.JobEnvironment().global_rank
            log = run / ("train.log" if rank == 0 else f"train.rank{rank}.log")
            code = 0 if trained(run, total) else self._run(
                ["train.py", "--config", str(run / "config.yaml"), "--run-dir", str(run), "--resume",
                 "--no-progress"], log, data["cwd"], distributed_env())
            if rank or (code == 0 and trained(run, total)):
                return code
            status = read_json(run / STATUS)
            if code == 0:  # stopped by a signal: starting the sweep again resumes it
                raise VariantFailed(f"{self.name}: stopped at iteration {status.get('iteration')} of {total}")
            return self._fail(run, status.get("error") or f"train.py exited with status {code}", log)
        if not trained(run, total):
            return self._fail(run, f"not trained to iteration {total}", run / STATUS)
        log = run / "score.log"
        code = self._run(["test.py", "--checkpoint", str(run / "checkpoints" / "latest.pt"), "--config",
                          str(run / "config.yaml"), "--out", str(run / "results"), "--no-progress"],
                         log, data["cwd"], {})
        if code != 0:
            return self._fail(run, f"test.py exited with status {code}", log)
        result = read_json(run / "results" / "metrics.json")
        numbers = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        update_record(run, metrics=numbers, skipped=result.get("skipped") or None)
        write_ablation_tables(Path(self.out))  # once every variant is scored
        return numbers

    def _run(self, cmd: list, log: Path, cwd: str, env: dict) -> int:
        """Run a script of the repository to its end, output appended to ``log``."""
        cmd = [sys.executable, str(REPO / cmd[0])] + cmd[1:]
        with open(log, "a") as handle:
            handle.write(f"$ {shlex.join(cmd)}  # {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            handle.flush()
            self._child = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd,
                                           env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})
        self._code = None  # set by a thread: a signal handler here never waits on Popen's lock
        threading.Thread(target=lambda child: setattr(self, "_code", child.wait()), args=(self._child,),
                         daemon=True).start()
        previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(self._child.pid, signal.SIGTERM))
        try:
            while self._code is None:
                time.sleep(0.1)
            return self._code
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _fail(self, run: Path, error: str, log: Path):
        update_record(run, error=error, log=str(log), tail=log_tail(log))
        raise VariantFailed(f"{self.name}: {error} (log {log})")
