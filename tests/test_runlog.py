"""What a run writes besides checkpoints: image grids on their own schedule, and progress that a
log file can keep (plain lines instead of a redrawn bar)."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from xinggan.config import load_config
from xinggan.progress import PlainProgress, progress
from xinggan.training import Trainer

from helpers import tiny_training_overrides

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("checkpoint_every,image_every", [(4, 2), (2, 0)])
def test_image_grids_follow_image_every(tiny_data, tmp_path, checkpoint_every, image_every):
    """Grids every ``image_every`` iterations (0: at each checkpoint), and at the end: an
    image_every below checkpoint_every used to give grids only at the checkpoints."""
    cfg = load_config(REPO / "configs" / "toy.yaml", tiny_training_overrides(
        tiny_data, **{"train.iterations": 5, "train.checkpoint_every": checkpoint_every,
                      "train.image_every": image_every}))
    Trainer(cfg, tmp_path, progress=False, tensorboard=False).fit()
    grids = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert grids == ["iter_0000002.png", "iter_0000004.png", "iter_0000005.png"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_writes_a_line_per_interval_and_one_at_the_end():
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(total=1000, desc="train", unit="it", stream=out, interval_s=30,
                        clock=clock)
    for _ in range(1000):
        clock.now += 0.125  # 8 it/s: 125 s in all, so a line at 30, 60, 90, 120 s and the end
        bar.update(1)
        bar.set_postfix(l1="0.250")
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 5, lines
    assert lines[0] == "train: 240/1000 it (24%), 8 it/s, 1m35s left, l1=0.250"
    assert lines[-1] == "train: 1000/1000 it (100%), 8 it/s, 2m05s in all, l1=0.250"


def test_progress_is_a_bar_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(progress(total=3, stream=io.StringIO()), PlainProgress)
    assert not isinstance(progress(total=3, stream=Terminal()), PlainProgress)


def test_training_into_a_log_file_writes_no_redrawn_bar(tiny_data, tmp_path):
    """train.py with its output in a file (a Slurm log): plain lines, no carriage returns."""
    cmd = [sys.executable, "train.py", "--config", "configs/toy.yaml", "--run-dir",
           str(tmp_path / "run")]
    for s in tiny_training_overrides(tiny_data, **{"train.iterations": 6,
                                                   "train.checkpoint_every": 6}):
        cmd += ["--set", s]
    with open(tmp_path / "log.txt", "w") as log:
        subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True,
                       timeout=300)
    text = (tmp_path / "log.txt").read_text()
    assert "\r" not in text
    assert "train: 6/6 it (100%)" in text
