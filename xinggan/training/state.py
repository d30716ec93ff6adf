"""Random-number state for exact resumption, one entry per process (rank).

Each rank of a multi-process run draws its own random numbers (dropout masks, image-pool swaps)
from its own generators, seeded differently at start.  So a resumable checkpoint holds every
rank's state: :func:`gather_to_main` collects them on rank 0, which writes the one checkpoint;
on resume each rank takes back its own entry.  States are kept as tensors and plain values so
that checkpoints load with ``torch.load(weights_only=True)``.

DataLoader worker processes get their seeds from (seed, rank, iteration, worker id)
(:func:`loader_seed` and :func:`seed_worker`), so that any random draw in a worker is the same
whenever a run reaches that iteration with the same seed; they also ignore SIGINT and SIGTERM,
which a scheduler sends to the whole process group, so that only the main process reacts (it
finishes the iteration, saves, then releases and shuts the workers down).
"""
from __future__ import annotations

import os
import random
import signal
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["rng_state", "set_rng_state", "seed_process", "gather_to_main", "loader_seed",
           "seed_worker"]


def rng_state(device: Optional[torch.device] = None) -> dict:
    """This process's python, numpy and torch generator states, and on a CUDA ``device`` that
    GPU's generator state (only this process's GPU: another run may see another number of
    GPUs).  Every tensor is a CPU tensor."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if device is not None and torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device)).cpu()
    return state


def set_rng_state(state: dict, device: Optional[torch.device] = None) -> Optional[str]:
    """Restore :func:`rng_state` (tensors may arrive on any device: they are read on the CPU).

    Returns a line to tell the user when the CUDA generator could not be restored (a checkpoint
    written on the CPU resumed on a GPU, or the reverse); None when everything was restored.
    """
    random.setstate(_to_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    on_cuda = device is not None and torch.device(device).type == "cuda"
    saved = state.get("cuda")
    if isinstance(saved, (list, tuple)):  # older checkpoints: every visible GPU's state
        index = (torch.device(device).index or 0) if on_cuda else 0
        saved = saved[index] if index < len(saved) else None
    if on_cuda and saved is not None:
        torch.cuda.set_rng_state(saved.cpu(), torch.device(device))
        return None
    if on_cuda:
        return ("the checkpoint holds no CUDA generator state for this GPU (written on the CPU "
                "or with fewer GPUs): the CUDA generator keeps its seed, so dropout draws "
                "differ from an uninterrupted run")
    if saved is not None:
        return ("the checkpoint was written on a GPU and resumes on the CPU: the random draws "
                "(dropout) are not those the GPU run would have made")
    return None


def _to_tuple(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_to_tuple(v) for v in value)
    return value


def seed_process(seed: int, rank: int, iteration: int = 0) -> None:
    """Seed python, numpy and torch for ``rank`` (at ``iteration``: used when a run resumes
    without its own states, e.g. with another number of processes)."""
    torch.manual_seed(seed + 1000 * (rank + 1) + 7919 * iteration)
    random.seed(seed + rank + 7919 * iteration)
    np.random.seed((seed + rank + 7919 * iteration) % 2**32)


def gather_to_main(value: Any, rank: int, world_size: int) -> Optional[list]:
    """``[value of rank 0, value of rank 1, ...]`` on rank 0, None elsewhere (a collective:
    every rank must call it).  One process: ``[value]``."""
    if world_size == 1 or not dist.is_initialized():
        return [value]
    if dist.get_backend() == "nccl":  # gather_object moves its buffers to the current device
        value = _to_cpu(value)
    out = [None] * world_size if rank == 0 else None
    dist.gather_object(value, out, dst=0)
    return out


def _to_cpu(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def loader_seed(seed: int, rank: int, iteration: int) -> int:
    """Seed of the DataLoader's own generator, from which PyTorch draws the workers' base seed."""
    return int(np.random.SeedSequence([seed, rank, iteration]).generate_state(1, np.uint64)[0]
               % 2**63)


def seed_worker(worker_id: int, release=None) -> None:  # noqa: ARG001 - worker_init_fn
    """In a DataLoader worker: ignore SIGINT, and SIGTERM until ``release`` (an event the main
    process sets when it shuts its workers down) is set, so that a stop signal sent to the whole
    process group leaves the workers to the main process, while the DataLoader's own clean-up
    (which terminates a worker that does not stop in time) still works.  Python and numpy are
    seeded from the worker's torch seed (itself drawn from :func:`loader_seed`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_term(signum, frame):  # noqa: ARG001
        if release is not None and release.is_set():
            os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)
