"""Several processes that stop together: a non-finite loss, a checkpoint that not every rank can
see, a failed save on rank 0 and a data error on rank 1, in 2 gloo processes started as
``mp.spawn`` or as srun starts them (environment variables, no agent)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xinggan.checkpoint import load_checkpoint
from xinggan.training import Trainer, TrainingError, distributed

from helpers import random_toy_config, tiny_training_overrides

REPO = Path(__file__).resolve().parents[1]
config = random_toy_config


def run_two_ranks(worker, root: Path, out: Path, limit_s: float = 180) -> None:
    """``worker(rank, 2, init_file, root, out)`` in 2 gloo processes; a failure when they have
    not all ended within ``limit_s`` (a rank left waiting in a collective hangs)."""
    import torch.multiprocessing as mp

    context = mp.spawn(worker, nprocs=2, join=False,
                       args=(2, str(out / "init"), str(root), str(out)))
    deadline = time.monotonic() + limit_s
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the ranks had not all ended {limit_s:.0f} s later: they did not stop "
                        "together")


def _non_finite_worker(rank: int, world: int, init_file: str, root: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    report = {"rank": rank}
    try:
        # the host looks at iterations 2 and 4 only (checkpoint_every 2, log_every 4)
        cfg = config(Path(root), **{"train.batch_size": 4, "train.iterations": 6,
                                    "train.log_every": 4})
        trainer = Trainer(cfg, Path(out) / "run", rank=rank, world_size=world, progress=False,
                          tensorboard=False)
        trainer.fit(max_iterations=2)
        before = {k: v.clone() for k, v in trainer.generator.named_parameters()}
        if rank == 1:  # only rank 1 meets a NaN, at iteration 3; the host hears of it at 4
            original = trainer.parts.losses["gan"].forward
            trainer.parts.losses["gan"].forward = lambda p, real: original(p, real) * float("nan")
        try:
            trainer.fit()
        except TrainingError as error:
            report["error"] = str(error)
        report["iteration"] = trainer.iteration
        report["unchanged"] = all(torch.equal(v, before[k])
                                  for k, v in trainer.generator.named_parameters())
    finally:
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))
        distributed.finish()  # the DDP reducers go before the process group


def test_non_finite_loss_on_one_rank_stops_every_rank(tiny_data, tmp_path):
    """2 gloo processes; rank 1's loss turns NaN at iteration 3, which the host reads at 4.
    Both ranks stop there with an error naming iteration 3, rank 1 and its terms; neither
    changed a weight after iteration 2 (the steps were skipped on the device); the checkpoint of
    iteration 2 stays; and the run ends (a rank left waiting in a collective would hang)."""
    run_two_ranks(_non_finite_worker, tiny_data, tmp_path)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for report in reports:
        assert report["iteration"] == 4, report
        assert "non-finite loss at iteration 3: rank 1: " in report.get("error", ""), report
        assert "rank 0" not in report["error"]
        assert "g_gan=nan" in report["error"]
        assert report["unchanged"], report
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["iteration"] == 2


def _blind_rank_worker(rank: int, world: int, init_file: str, root: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    report = {"rank": rank}
    try:
        cfg = config(Path(root), **{"train.batch_size": 4})
        kw = dict(rank=rank, world_size=world, progress=False, tensorboard=False)
        Trainer(cfg, Path(out) / "shared", **kw).fit(max_iterations=2)
        # rank 1 looks at a run folder of its own, as a node without the shared file system
        run = Path(out) / ("shared" if rank == 0 else "node-local")
        try:
            Trainer(cfg, run, **kw).fit(resume=True)
        except TrainingError as error:
            report["error"] = str(error)
    finally:
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))
        distributed.finish()  # the DDP reducers go before the process group


def test_a_rank_that_cannot_see_the_checkpoint_stops_every_rank(tiny_data, tmp_path):
    """Rank 0 resumes, rank 1 cannot read the checkpoint: both stop with one error naming rank
    1 (without the common decision rank 1 would train from iteration 0 beside rank 0)."""
    run_two_ranks(_blind_rank_worker, tiny_data, tmp_path)
    for r in range(2):
        report = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert "rank(s) 1 cannot read" in report.get("error", ""), report


# -- train.py processes started as srun starts them --------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def srun_style(root: Path, out: Path, inject: dict[int, str], limit_s: float = 300, **extra):
    """2 ``train.py`` processes with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT only, each
    importing ``inject[rank]`` first (a sitecustomize module that breaks something); returns
    ([exit codes], [outputs], seconds from the injected failure (``MARK`` in the injected
    code records its time) until both ended)."""
    cmd = [sys.executable, "train.py", "--config", "configs/toy.yaml", "--run-dir",
           str(out / "run"), "--no-progress", "--set"]
    cmd += tiny_training_overrides(root, **{"train.batch_size": 4, "train.iterations": 6,
                                            "train.checkpoint_every": 2, **extra})
    port, procs = free_port(), []
    for rank in range(2):
        site = out / f"site{rank}"
        site.mkdir()
        (site / "sitecustomize.py").write_text(
            inject.get(rank, "").replace("MARK", repr(str(out / "failed_at"))))
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
        for key in ("LOCAL_RANK", "TORCHELASTIC_USE_AGENT_STORE"):
            env.pop(key, None)
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    start = time.monotonic()
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=max(1.0, limit_s - (time.monotonic() - start)))[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"the ranks had not both ended {limit_s:.0f} s later")
    ended = time.time()
    mark = out / "failed_at"
    seconds = ended - float(mark.read_text()) if mark.is_file() else float("nan")
    return [p.returncode for p in procs], outputs, seconds


# os.replace of latest.pt fails with ENOSPC from the second save on (the first one is kept)
NO_SPACE = """
import errno, os
_replace, _count = os.replace, [0]
def replace(src, dst, *a, **k):
    if str(dst).endswith("latest.pt"):
        _count[0] += 1
        if _count[0] >= 2:
            open(MARK, "w").write(repr(__import__("time").time()))
            raise OSError(errno.ENOSPC, "No space left on device")
    return _replace(src, dst, *a, **k)
os.replace = replace
"""

# the 5th image this rank loads is unreadable
DATA_ERROR = """
import xinggan.data.dataset as d
_getitem, _count = d.PairDataset.__getitem__, [0]
def getitem(self, index):
    _count[0] += 1
    if _count[0] == 5:
        open(MARK, "w").write(repr(__import__("time").time()))
        raise d.DataError("/data/train/broken.jpg: unreadable image (truncated)")
    return _getitem(self, index)
d.PairDataset.__getitem__ = getitem
"""

# the L1 loss is NaN from iteration 3 on
NAN_LOSS = """
import xinggan.training.loop as loop
_build = loop.build_parts
def build_parts(*args, **kwargs):
    parts = _build(*args, **kwargs)
    l1, calls = parts.losses["l1"], [0]
    forward = l1.forward
    def poisoned(x, y):
        calls[0] += 1
        return forward(x, y) * (float("nan") if calls[0] >= 3 else 1.0)
    l1.forward = poisoned
    return parts
loop.build_parts = build_parts
"""


def test_a_failed_save_on_rank_0_stops_every_rank(tiny_data, tmp_path):
    codes, outputs, seconds = srun_style(tiny_data, tmp_path, {0: NO_SPACE})
    assert codes == [1, 1], outputs
    assert seconds < 60, seconds
    assert "No space left on device" in outputs[0] and "rank 0" in outputs[0], outputs[0]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["iteration"] == 2
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and "No space left" in status["error"], status
    assert "Traceback" not in "".join(outputs)


def test_a_data_error_on_rank_1_stops_every_rank(tiny_data, tmp_path):
    codes, outputs, seconds = srun_style(tiny_data, tmp_path, {1: DATA_ERROR})
    assert codes == [1, 1], outputs
    assert seconds < 60, seconds
    assert "error: rank 1: /data/train/broken.jpg: unreadable image" in outputs[1], outputs[1]
    assert "rank 1 failed: /data/train/broken.jpg" in outputs[0], outputs[0]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["iteration"] == 2


def test_a_non_finite_loss_on_rank_1_ends_both_with_status_1(tiny_data, tmp_path):
    codes, outputs, _ = srun_style(tiny_data, tmp_path, {1: NAN_LOSS})
    assert codes == [1, 1], outputs  # an exit status, never a signal
    assert "non-finite loss at iteration 3: rank 1: g_total=nan" in outputs[0], outputs[0]
