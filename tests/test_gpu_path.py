"""The GPU path's bookkeeping, shown on the CPU: a checkpoint is read to the CPU and each part
goes where it belongs, and a process picks the GPU of its local rank."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.serialization

from xinggan.checkpoint import load_checkpoint, save_checkpoint
from xinggan.config import ConfigError
from xinggan.training import Trainer, pick_device
from xinggan.training.state import rng_state, set_rng_state

from helpers import random_toy_config

REPO = Path(__file__).resolve().parents[1]
config = random_toy_config


def trained_checkpoint(root: Path, run: Path) -> dict:
    Trainer(config(root), run, progress=False, tensorboard=False).fit(max_iterations=2)
    return load_checkpoint(run / "checkpoints" / "latest.pt")


# -- reading a checkpoint on another device ------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*meta parameter")
def test_resume_on_a_device_that_is_not_the_cpu_puts_each_part_where_it_belongs(tiny_data,
                                                                                tmp_path):
    """The checkpoint's tensors must not follow the trainer's device: the RNG states are read on
    the CPU (the generators take only CPU byte tensors), the pools go to the device.  The meta
    device stands in for a GPU here: it is a non-CPU device on every machine."""
    saved = trained_checkpoint(tiny_data, tmp_path / "run")
    trainer = Trainer(config(tiny_data), tmp_path / "run", device=torch.device("meta"),
                      progress=False, tensorboard=False)
    assert trainer.resume()
    assert trainer.iteration == 2
    assert torch.equal(torch.get_rng_state(), saved["ranks"][0]["rng"]["torch"])
    pools = (trainer.parts.shape_pool, trainer.parts.appearance_pool)
    assert all(len(pool) == 2 for pool in pools)
    assert {image.device.type for pool in pools for image in pool.images} == {"meta"}
    assert {p.device.type for p in trainer.generator.parameters()} == {"meta"}


def test_checkpoint_written_on_a_gpu_resumes_on_the_cpu(tiny_data, tmp_path, monkeypatch):
    """A checkpoint whose storages say ``cuda:0`` (as ``torch.save`` writes them on a GPU),
    with a CUDA generator state, resumes on a CPU-only machine: same weights, optimiser and
    pools as the run that wrote it, and one line saying the random draws differ."""
    run = tmp_path / "run"
    saved = trained_checkpoint(tiny_data, run)
    saved["ranks"][0]["rng"]["cuda"] = torch.zeros(16, dtype=torch.uint8)
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    save_checkpoint(saved, run / "checkpoints" / "latest.pt")
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="CUDA"):  # the tags are really there
        torch.load(run / "checkpoints" / "latest.pt", weights_only=True)

    trainer = Trainer(config(tiny_data), run, progress=False, tensorboard=False)
    assert trainer.resume()
    for key, value in trainer.generator.state_dict().items():
        assert torch.equal(value, saved["generator"][key]), key
    state = trainer.parts.opt_g.state_dict()["state"]
    for index, entry in saved["optimizers"]["generator"]["state"].items():
        assert torch.equal(state[index]["exp_avg"], entry["exp_avg"])
    assert torch.equal(trainer.parts.shape_pool.state_dict()["images"],
                       saved["ranks"][0]["pools"]["shape"]["images"])
    assert any("written on a GPU" in line for line in trainer.log.notices)


def test_cuda_rng_state_is_this_gpus_own(monkeypatch):
    """Only this process's GPU state is kept, and restored whatever number of GPUs another run
    sees; older checkpoints' per-GPU lists give this GPU's entry."""
    calls = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: torch.full((8,), device.index,
                                                                              dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device: calls.setdefault("set", (state.clone(), device)))
    state = rng_state(torch.device("cuda:1"))
    assert torch.equal(state["cuda"], torch.full((8,), 1, dtype=torch.uint8))
    assert set_rng_state(state, torch.device("cuda:1")) is None
    assert torch.equal(calls["set"][0], state["cuda"]) and calls["set"][1] == torch.device("cuda:1")

    calls.clear()
    old = dict(state, cuda=[torch.zeros(8, dtype=torch.uint8), torch.ones(8, dtype=torch.uint8)])
    assert set_rng_state(old, torch.device("cuda:1")) is None
    assert torch.equal(calls["set"][0], torch.ones(8, dtype=torch.uint8))

    calls.clear()  # a checkpoint of one GPU resumed on the third: said, not silently skipped
    line = set_rng_state(dict(state, cuda=[torch.zeros(8, dtype=torch.uint8)]),
                         torch.device("cuda:2"))
    assert "no CUDA generator state" in line and "set" not in calls
    assert "no CUDA generator state" in set_rng_state({k: v for k, v in state.items()
                                                       if k != "cuda"}, torch.device("cuda:0"))


# -- the device of each process -----------------------------------------------------------


@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


def test_each_process_takes_the_gpu_of_its_local_rank(four_gpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert pick_device("cuda") == torch.device("cuda:3")
    assert pick_device("auto") == torch.device("cuda:3")
    assert pick_device("cuda", 2, 4) == torch.device("cuda:2")
    with pytest.raises(ConfigError, match="cuda:0.*4 processes.*CUDA_VISIBLE_DEVICES"):
        pick_device("cuda:0")  # every rank on one GPU: refused
    assert pick_device("cpu") == torch.device("cpu")


def test_one_process_may_name_its_gpu(four_gpus, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert pick_device("cuda:2") == torch.device("cuda:2")
    assert pick_device("cuda") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="only 4 GPU"):
        pick_device("cuda:5")
    with pytest.raises(ConfigError, match="only 4 GPU"):
        pick_device("cuda", 4, 8)


def test_one_visible_gpu_is_every_local_rank_s(monkeypatch):
    """srun --gpus-per-task=1 / --gpu-bind: each task sees one GPU, whatever its local rank."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert pick_device("cuda") == torch.device("cuda:0")


@pytest.mark.parametrize("env,expected", [({"RANK": "5"}, "cuda:1"),  # mp.spawn: rank % count
                                          ({"RANK": "5", "SLURM_LOCALID": "2"}, "cuda:2"),
                                          ({"RANK": "5", "LOCAL_RANK": "3"}, "cuda:3")])
def test_the_local_rank_comes_from_the_launcher(four_gpus, monkeypatch, env, expected):
    for key in ("LOCAL_RANK", "SLURM_LOCALID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "8")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert pick_device("cuda") == torch.device(expected)


def test_cuda_where_there_is_none(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device"):
        pick_device("cuda")
    assert pick_device("auto") == torch.device("cpu")
