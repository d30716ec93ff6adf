"""Bad input, interrupted runs and untrusted files: each case gives one clear error, and no
work is lost.  (Data-file and evaluation-folder cases are in test_data.py and
test_evaluate.py; config errors in test_config.py; non-finite losses and SIGTERM in
test_training.py.)"""
from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xinggan.checkpoint import (FORMAT_VERSION, CheckpointError, load_checkpoint,
                                save_checkpoint)
from xinggan.config import load_config

from helpers import tiny_training_overrides

REPO = Path(__file__).resolve().parents[1]


def tiny_sets(root: Path, **extra) -> list[str]:
    return tiny_training_overrides(root, **{"train.iterations": 4, "train.checkpoint_every": 2,
                                            **extra})


@pytest.fixture(scope="module")
def good_checkpoint(tiny_data, tmp_path_factory) -> Path:
    from xinggan.training import Trainer

    run = tmp_path_factory.mktemp("run_reliability")
    cfg = load_config(REPO / "configs" / "toy.yaml", tiny_sets(tiny_data, **{"train.iterations": 1}))
    trainer = Trainer(cfg, run, progress=False, tensorboard=False)
    trainer.fit()
    return trainer.checkpoint_path


def train_cmd(root: Path, run_dir: Path, *extra: str, **sets) -> list[str]:
    cmd = [sys.executable, "train.py", "--config", "configs/toy.yaml", "--run-dir", str(run_dir),
           "--no-progress", *extra]
    for s in tiny_sets(root, **sets):
        cmd += ["--set", s]
    return cmd


# -- checkpoints are untrusted files -------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # random bytes, read as a header
def test_truncated_checkpoint(good_checkpoint, tmp_path):
    data = good_checkpoint.read_bytes()
    bad = tmp_path / "truncated.pt"
    for fraction in (0.01, 0.1, 0.5, 0.9, 0.999):
        bad.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_checkpoint(bad)
    # Random bytes fail inside the unpickler in several ways (UnpicklingError mostly, also
    # IndexError, KeyError, UnicodeDecodeError): each must come out as a CheckpointError that
    # names the file. Seeded, so that the same byte strings are tried on every run.
    noise = tmp_path / "noise.pt"
    rng = random.Random(0)
    for _ in range(200):
        noise.write_bytes(rng.randbytes(4096))
        with pytest.raises(CheckpointError, match=str(noise)):
            load_checkpoint(noise)


class _Payload:
    def __reduce__(self):  # would run code with a plain pickle load
        return (os.system, ("echo should-not-run",))


def test_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "xinggan", "version": 1, "config": {}, "generator": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)


def test_foreign_and_newer_checkpoints(good_checkpoint, tmp_path):
    plain = tmp_path / "latest_net_netG.pth"
    torch.save({"model.stream1_down.1.weight": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="not an xinggan checkpoint.*convert_official"):
        load_checkpoint(plain)
    state = torch.load(good_checkpoint, weights_only=True)
    state["version"] = FORMAT_VERSION + 1
    newer = tmp_path / "newer.pt"
    torch.save(state, newer)
    with pytest.raises(CheckpointError, match="newer than this code reads"):
        load_checkpoint(newer)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_checkpoint_of_another_model(good_checkpoint, tmp_path):
    from xinggan import load_generator

    state = torch.load(good_checkpoint, weights_only=True)
    state["config"]["model"]["generator"]["n_blocks"] = 3  # weights are of a 2-block model
    other = tmp_path / "other.pt"
    torch.save(state, other)
    with pytest.raises(CheckpointError):
        load_generator(other)


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_checkpoint({"config": {}, "generator": {"w": torch.ones(3)}, "iteration": 1}, path)

    def disk_full(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device.*unchanged"):
        save_checkpoint({"config": {}, "generator": {"w": torch.zeros(3)}, "iteration": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temporary left behind


def test_kill_during_save_leaves_previous_checkpoint(tmp_path):
    """A process killed (SIGKILL) while writing a large checkpoint leaves the old one intact."""
    path = tmp_path / "latest.pt"
    save_checkpoint({"config": {}, "generator": {"w": torch.ones(3)}, "iteration": 1}, path)
    code = (
        "import torch\n"
        "from xinggan.checkpoint import save_checkpoint\n"
        "print('saving', flush=True)\n"
        "while True: save_checkpoint({'config': {}, 'generator': {'w': torch.zeros(64, 1024, 1024)},"
        " 'iteration': 2}, %r)\n" % (str(path),)
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"saving"
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    state = load_checkpoint(path)  # either the old or a complete new one, never a torn file
    assert state["iteration"] in (1, 2)


# -- interrupted training ------------------------------------------------------------------


def test_kill_9_loses_only_the_iterations_since_the_checkpoint(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    ckpt = run_dir / "checkpoints" / "latest.pt"
    proc = subprocess.Popen(train_cmd(tiny_data, run_dir, **{"train.iterations": 100000,
                                                            "train.checkpoint_every": 2}),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline and not ckpt.is_file():
        time.sleep(0.2)
    assert ckpt.is_file(), "no checkpoint appeared"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = load_checkpoint(ckpt)["iteration"]
    assert saved >= 2 and saved % 2 == 0
    out = subprocess.run(train_cmd(tiny_data, run_dir, "--resume",
                                   **{"train.iterations": saved + 2}),
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"resumed from {ckpt} at iteration {saved}" in out.stdout
    assert load_checkpoint(ckpt)["iteration"] == saved + 2


def test_bad_image_met_in_a_worker_gives_one_clear_error(tiny_data, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    victim = sorted((root / "train").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated JPEG
    out = subprocess.run(train_cmd(root, tmp_path / "run", **{"data.num_workers": 1,
                                                             "train.iterations": 200}),
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert victim.name in out.stderr
    assert "Traceback" not in out.stderr, out.stderr


def test_test_py_refuses_to_change_the_model(good_checkpoint, tiny_data, tmp_path):
    out = subprocess.run([sys.executable, "test.py", "--checkpoint", str(good_checkpoint),
                          "--out", str(tmp_path / "res"), "--set", "model.norm=instance",
                          "--set", f"data.root={tiny_data}", "--no-progress"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "model" in out.stderr and "checkpoint" in out.stderr
