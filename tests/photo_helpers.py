"""Helpers of the keypoints-from-photos tests: a lookup detector, script loading, a tiny checkpoint."""
from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

from helpers import tiny_training_overrides

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """The module of ``scripts/<name>.py``."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digest(image: np.ndarray) -> str:
    image = np.ascontiguousarray(image)
    return hashlib.sha1(str(image.shape).encode() + image.tobytes()).hexdigest()


class LookupDetector:
    """A stand-in detector: the keypoints registered for an image's exact pixels, else nobody.

    It records every image it is asked about, so tests can check what reached the detector.
    """

    name = "lookup"

    def __init__(self):
        self.table: dict[str, np.ndarray] = {}
        self.seen: list[tuple[int, ...]] = []

    def register(self, image: np.ndarray, keypoints: np.ndarray) -> None:
        self.table[digest(image)] = np.asarray(keypoints, dtype=np.int64).copy()

    def detect(self, image: np.ndarray) -> np.ndarray:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        self.seen.append(image.shape)
        found = self.table.get(digest(image))
        return found.copy() if found is not None else np.full((18, 2), -1, dtype=np.int64)


def train_tiny_checkpoint(data_root: Path, run_dir: Path, iterations: int = 2) -> Path:
    """Train a tiny XingGAN on toy data at 64 x 32 through train.py; the checkpoint's path."""
    cmd = [sys.executable, "train.py", "--config", "configs/toy.yaml", "--run-dir", str(run_dir),
           "--no-progress"]
    for s in tiny_training_overrides(data_root, **{"train.iterations": iterations,
                                                   "train.checkpoint_every": iterations}):
        cmd += ["--set", s]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    checkpoint = run_dir / "checkpoints" / "latest.pt"
    assert checkpoint.is_file()
    return checkpoint
