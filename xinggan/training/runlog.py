"""What a training run writes besides its checkpoints, on rank 0.

In ``<run>/``: ``config.yaml`` (the resolved config), ``versions.json``, ``notices.txt`` (one
line each time something runs otherwise than asked, also printed once at start),
``stats.jsonl`` (the loss terms, learning rate and images/s every ``train.log_every``
iterations), ``samples/iter_NNNNNNN.png`` (image grids of the first ``train.grid_pairs`` pairs,
every ``train.image_every`` iterations) and ``tensorboard/``.  Progress goes to stderr: a bar in a
terminal, plain lines in a log file (:mod:`xinggan.progress`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from xinggan.config import Config, save_config
from xinggan.progress import progress
from xinggan.runtime import versions

__all__ = ["RunLog"]


class RunLog:
    """The run folder's logs; every method is a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, *, is_main: bool = True, show_progress: bool = True,
                 tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        self.show_progress = show_progress and is_main
        self.tensorboard = tensorboard and is_main
        self.notices: list[str] = []
        self._started = False
        self._writer = None
        self._bar = None

    def notice(self, line: str) -> None:
        """Say once what runs instead of what was asked, and keep it in ``notices.txt``."""
        if line in self.notices:
            return
        self.notices.append(line)
        if self.is_main:
            print(f"note: {line}", file=sys.stderr)
            if self._started:
                self._append_notice(line)

    def _append_notice(self, line: str) -> None:
        with open(self.run_dir / "notices.txt", "a") as handle:
            handle.write(line + "\n")

    def start(self, cfg: Config) -> None:
        """Create the run folder and write what describes the run."""
        if not self.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.run_dir / "config.yaml")
        (self.run_dir / "versions.json").write_text(json.dumps(versions(), indent=1))
        for line in self.notices:  # said while setting up
            self._append_notice(line)
        self._started = True
        if self.tensorboard and self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # optional: seconds to import

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def open_progress(self, total: int, initial: int) -> None:
        if self.show_progress:
            self._bar = progress(total=total, initial=initial, desc="train", unit="it")

    def step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def stats(self, stats: dict) -> None:
        """One ``stats.jsonl`` row (and TensorBoard scalars, and the progress line's values)."""
        if self._bar is not None:
            self._bar.set_postfix(l1=f"{stats['g_l1']:.3f}", gan=f"{stats['g_gan']:.3f}",
                                  d=f"{stats['d_shape'] + stats['d_appearance']:.3f}",
                                  ips=f"{stats['images_per_s']:.1f}")
        if not self.is_main:
            return
        with open(self.run_dir / "stats.jsonl", "a") as handle:
            handle.write(json.dumps(stats) + "\n")
        if self._writer is not None:
            for key, value in stats.items():
                if key not in ("iteration", "time"):
                    self._writer.add_scalar(key, value, stats["iteration"])

    def grid(self, grid: np.ndarray, iteration: int) -> Optional[Path]:
        """Save an image grid (``H x W x 3`` uint8) for ``iteration``."""
        if not self.is_main:
            return None
        out = self.run_dir / "samples"
        out.mkdir(exist_ok=True)
        path = out / f"iter_{iteration:07d}.png"
        Image.fromarray(grid).save(path)
        if self._writer is not None:
            self._writer.add_image("samples", grid, iteration, dataformats="HWC")
        return path

    def say(self, line: str) -> None:
        if self.is_main:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
