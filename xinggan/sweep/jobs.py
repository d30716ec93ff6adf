"""One step of a variant as a submitit job: ``train`` runs ``train.py --resume`` in each task (with
torchrun's variables: DDP, one task per GPU), ``score`` runs ``test.py`` and records the metrics.
``train.py`` saves and exits 0 on SIGTERM or SIGUSR2. On SIGUSR2 (Slurm's ``--signal``) submitit
calls :meth:`VariantJob.checkpoint`, which passes it on, waits for ``train.py`` to exit and returns
the step for submitit to requeue. A training job that stops early fails: its scoring never runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import submitit

from xinggan.sweep.ablation import STATUS, read_definition, read_json, trained, update_record, write_ablation_tables

REPO = Path(__file__).resolve().parents[2]


def export_distributed_env() -> None:
    """torchrun's variables (RANK, WORLD_SIZE, MASTER_PORT from the job id...) for a multi-task job."""
    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


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
            self._child.send_signal(signal.SIGUSR2)  # never blocks on the reaper's lock
            while self._code is None:
                time.sleep(0.1)
        return submitit.helpers.DelayedSubmission(VariantJob(self.out, self.name, self.step))

    def __call__(self):
        run, data = Path(self.out) / self.name, read_definition(Path(self.out))
        total = next(v["config"]["train"]["iterations"] for v in data["variants"] if v["name"] == self.name)
        common = ["--config", str(run / "config.yaml"), "--no-progress"]
        if self.step == "train":
            export_distributed_env()
            rank = submitit.JobEnvironment().global_rank
            log = run / ("train.log" if rank == 0 else f"train.rank{rank}.log")
            code = trained(run, total) or self._run(["train.py", "--run-dir", str(run), "--resume", *common],
                                                    log, data["cwd"])
            if rank or trained(run, total):
                return code
            status = read_json(run / STATUS)
            if code == 0:  # stopped by a signal: starting the sweep again resumes it
                raise VariantFailed(f"{self.name}: stopped at iteration {status.get('iteration')} of {total}")
            return self._fail(run, status.get("error") or f"train.py exited with status {code}", log)
        if not trained(run, total):
            return self._fail(run, f"not trained to iteration {total}", run / STATUS)
        log = run / "score.log"
        code = self._run(["test.py", "--checkpoint", str(run / "checkpoints" / "latest.pt"), "--out",
                          str(run / "results"), *common], log, data["cwd"])
        if code != 0:
            return self._fail(run, f"test.py exited with status {code}", log)
        result = read_json(run / "results" / "metrics.json")
        numbers = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        update_record(run, metrics=numbers, skipped=result.get("skipped") or None)
        write_ablation_tables(Path(self.out))  # once every variant is scored
        return numbers

    def _run(self, cmd: list, log: Path, cwd: str) -> int:
        """Run a script of the repository to its end, output appended to ``log``."""
        cmd = [sys.executable, str(REPO / cmd[0])] + cmd[1:]
        with open(log, "a") as handle:
            handle.write(f"$ {' '.join(cmd)}  # {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            handle.flush()
            self._child = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd,
                                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._code = None  # set by a thread: a signal handler here never waits on Popen's lock
        threading.Thread(target=lambda child: setattr(self, "_code", child.wait()), args=(self._child,),
                         daemon=True).start()
        previous = signal.signal(signal.SIGTERM, lambda *_: self._child.send_signal(signal.SIGTERM))
        try:
            while self._code is None:
                time.sleep(0.1)
            return self._code
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _fail(self, run: Path, error: str, log: Path):
        update_record(run, error=error, log=str(log),
                      tail=log.read_text(errors="replace").splitlines()[-5:] if log.is_file() else None)
        raise VariantFailed(f"{self.name}: {error} (log {log})")
