"""The backend flags of a run (xinggan.runtime.configure_backends) and the entry points that
set them. The CUDA branch is exercised without a GPU: the cuDNN and TF32 switches are plain
process flags that can be set and read on any machine."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from xinggan import runtime
from xinggan.config import load_config, to_dict
from xinggan.training import distributed

from helpers import load_script

REPO = Path(__file__).resolve().parents[1]


def denormals_flushed() -> bool:
    """Whether this thread flushes denormal floats to zero, read from arithmetic: 1e-40 is a
    float32 denormal, kept when converted and multiplied, 0 when flushed."""
    return torch.tensor([1e-40]).mul(1.0).item() == 0.0


@pytest.fixture
def backend_state(monkeypatch):
    """Restores every flag configure_backends may change, and starts without
    CUBLAS_WORKSPACE_CONFIG (monkeypatch restores the environment)."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             denormals_flushed())
    yield
    det, warn_only, bench, cudnn_det, matmul_tf32, cudnn_tf32, flushed = saved
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = bench, cudnn_det
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul_tf32, cudnn_tf32
    torch.set_flush_denormal(flushed)


def test_deterministic_on_cpu_sets_the_mode_and_the_cublas_workspace(backend_state):
    import os

    torch.use_deterministic_algorithms(False)
    lines = runtime.configure_backends("cpu", deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert any("deterministic algorithms on" in line and ":4096:8" in line for line in lines)
    # each call applies its own setting: a later non-deterministic run does not inherit it
    lines = runtime.configure_backends(torch.device("cpu"), deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert any("deterministic algorithms off" in line for line in lines)


def test_not_deterministic_leaves_the_environment_alone(backend_state):
    import os

    torch.use_deterministic_algorithms(True)
    runtime.configure_backends("cpu", deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_a_cublas_workspace_already_set_is_kept(backend_state, monkeypatch):
    import os

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the other valid setting
    lines = runtime.configure_backends("cpu", deterministic=True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert any(":16:8" in line for line in lines)


def test_cpu_flushes_denormals(backend_state):
    torch.set_flush_denormal(False)
    assert not denormals_flushed()
    lines = runtime.configure_backends("cpu")
    assert denormals_flushed()
    assert "cpu: denormals flushed to zero" in lines


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("tf32", [True, False])
def test_cuda_branch_sets_cudnn_and_tf32(backend_state, deterministic, tf32):
    """Called for a CUDA device (no GPU is needed to set these flags): TF32 for matmuls and
    cuDNN convolutions as asked, autotuning unless deterministic, cuDNN's deterministic mode
    as asked; every flag starts at the opposite value."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not tf32
    torch.backends.cudnn.benchmark = deterministic
    torch.backends.cudnn.deterministic = not deterministic
    flushed = denormals_flushed()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation warning from the TF32 switches
        lines = runtime.configure_backends(torch.device("cuda"), deterministic=deterministic,
                                           tf32=tf32)
        # the legacy getters and the matmul precision stay readable (Inductor reads them)
        assert torch.backends.cuda.matmul.allow_tf32 is tf32
        assert torch.backends.cudnn.allow_tf32 is tf32
        # PyTorch's documented equivalence: TF32 matmuls are precision "high"
        assert torch.get_float32_matmul_precision() == ("high" if tf32 else "highest")
    assert torch.backends.cudnn.benchmark is (not deterministic)
    assert torch.backends.cudnn.deterministic is deterministic
    assert torch.are_deterministic_algorithms_enabled() is deterministic
    assert denormals_flushed() == flushed  # a CPU-only setting, left alone on CUDA
    assert any(("TF32 matmuls and convolutions on" if tf32 else "TF32 off") in line
               for line in lines)
    assert any(line.startswith("cuda: cudnn.benchmark " + ("off" if deterministic else "on"))
               for line in lines)


# -- the entry points --------------------------------------------------------------------


class Stop(Exception):
    """Raised by a stand-in to end an entry point once the call under test was made."""


def test_train_configures_backends_from_the_config_before_the_process_group(monkeypatch):
    """train.py passes train.deterministic and train.tf32 for its device, and does so before
    the process group starts (with deterministic, CUBLAS_WORKSPACE_CONFIG must be in place
    before any CUDA work)."""
    calls = []

    def configure(device, *, deterministic=False, tf32=True):
        calls.append(("configure", torch.device(device), deterministic, tf32))
        return ["recorded"]

    def start(*args, **kwargs):
        calls.append(("init_process_group",))
        raise Stop

    monkeypatch.setattr(runtime, "configure_backends", configure)
    monkeypatch.setattr(distributed, "start", start)
    for key, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(key, value)
    train = load_script("train", folder="")
    with pytest.raises(Stop):
        train.main(["--config", str(REPO / "configs/toy.yaml"), "--no-progress", "--set",
                    "train.device=cpu", "train.deterministic=true", "train.tf32=false"])
    assert calls == [("configure", torch.device("cpu"), True, False), ("init_process_group",)]


def test_train_passes_the_defaults_of_a_config(monkeypatch):
    calls = []

    def configure(device, *, deterministic=False, tf32=True):
        calls.append((torch.device(device), deterministic, tf32))
        raise Stop  # before any model is built

    monkeypatch.setattr(runtime, "configure_backends", configure)
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    train = load_script("train", folder="")
    with pytest.raises(Stop):
        train.main(["--config", str(REPO / "configs/market.yaml"), "--set", "train.device=cpu"])
    cfg = load_config(REPO / "configs/market.yaml")
    assert calls == [(torch.device("cpu"), cfg.train.deterministic, cfg.train.tf32)]


@pytest.mark.parametrize("sets, tf32", [([], False), (["--set", "train.tf32=true"], True)])
def test_test_py_uses_train_tf32_without_the_deterministic_mode(monkeypatch, tmp_path, sets,
                                                                tf32):
    """test.py takes train.tf32 from the checkpoint's config (or --set) and never turns the
    deterministic mode on, whatever the training run used."""
    import xinggan.checkpoint

    trained = load_config(REPO / "configs/toy.yaml", ["train.tf32=false",
                                                      "train.deterministic=true"])
    monkeypatch.setattr(xinggan.checkpoint, "load_checkpoint",
                        lambda path, *a, **k: {"config": to_dict(trained)})
    calls = []

    def configure(device, *, deterministic=False, tf32=True):
        calls.append((torch.device(device), deterministic, tf32))
        raise Stop

    monkeypatch.setattr(runtime, "configure_backends", configure)
    test_py = load_script("test", folder="")
    with pytest.raises(Stop):
        test_py.main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "out"),
                      "--device", "cpu", "--no-progress", *sets])
    assert calls == [(torch.device("cpu"), False, tf32)]
