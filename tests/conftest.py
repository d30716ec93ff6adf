"""Shared test fixtures (the plain helpers they use are in helpers.py)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import TOY

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


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Toy data at 64 x 32 (3 train and 2 test identities), made once per session."""
    from xinggan.prep.toy import make_toy_dataset

    root = tmp_path_factory.mktemp("toy64")
    make_toy_dataset(root, seed=1, identities=3, test_identities=2, poses=3, test_pairs=6,
                     height=64, width=32)
    return root
