"""Shared test fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Deterministic cuBLAS needs this workspace setting, and cuBLAS reads it once, when a process
# first uses it: set here, when the test session starts and before any test touches CUDA.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real annotation/pair files beside the checkout; skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


# The small toy dataset shared by the data tests (generated once per test session).
TOY = dict(seed=0, identities=6, test_identities=3, poses=5, test_pairs=20)


@pytest.fixture(scope="session")
def toy_params() -> dict:
    return dict(TOY)


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    from xinggan.prep.toy import make_toy_dataset

    root = tmp_path_factory.getbasetemp() / "toy-dataset"
    if not (root / ".complete").is_file():
        make_toy_dataset(root, **TOY)
        (root / ".complete").touch()
    return root


# A CPU-second-sized training setup on 64 x 32 toy data, shared by the training tests.
TINY_TRAINING = {
    "data.height": 64, "data.width": 32, "data.num_workers": 0,
    "model.generator.ngf": 8, "model.generator.n_blocks": 2,
    "model.generator.num_candidates": 2, "model.discriminator.ndf": 8,
    "model.discriminator.n_blocks": 1, "train.batch_size": 2, "train.log_every": 1,
    "train.grid_pairs": 2, "train.device": "cpu",
}


def tiny_training_overrides(root: Path, **extra) -> list[str]:
    """``key=value`` overrides of configs/toy.yaml for a tiny run on the data in ``root``."""
    values = {"data.root": str(root), **TINY_TRAINING, **extra}
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Toy data at 64 x 32 (3 train and 2 test identities), made once per session."""
    from xinggan.prep.toy import make_toy_dataset

    root = tmp_path_factory.mktemp("toy64")
    make_toy_dataset(root, seed=1, identities=3, test_identities=2, poses=3, test_pairs=6,
                     height=64, width=32)
    return root


def smooth_image(rng, height: int = 128, width: int = 64):
    """A uint8 RGB image with natural-image-like structure (smooth colour fields plus noise)."""
    import numpy as np
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.normal(size=(height, width, 3)), sigma=(4, 4, 0))
    field = (field - field.min()) / (field.max() - field.min()) * 200 + 20 + rng.normal(scale=5, size=field.shape)
    return np.clip(field, 0, 255).astype(np.uint8)
