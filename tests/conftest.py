"""Shared test fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    from xinggan.data.toy import make_toy_dataset

    root = tmp_path_factory.getbasetemp() / "toy-dataset"
    if not (root / ".complete").is_file():
        make_toy_dataset(root, **TOY)
        (root / ".complete").touch()
    return root
