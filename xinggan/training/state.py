"""Checkpoint state for exact resumption, and the writer that saves it in the background.

A checkpoint holds the networks, optimisers and scaler (rank 0's ``latest.pt``) and one part per
process (rank): its random-number generators and image pools.  One process keeps its part inside
``latest.pt``; with several, each rank writes ``rank<R>-<iteration>.pt`` beside it and rank 0
renames ``latest.pt`` only once every part of that iteration is there, so one checkpoint stays one
unit.  States are tensors and plain values: they load with ``torch.load(weights_only=True)``.

DataLoader workers are seeded from (seed, rank, iteration, worker id) and ignore stop signals,
which a scheduler sends to the whole process group (the main process saves, then ends them).
"""
from __future__ import annotations

import dataclasses
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from xinggan.checkpoint import CheckpointError
from xinggan.config import Config, config_from_dict
from xinggan.runtime import versions
from xinggan.training.step import GANParts, TrainingError

__all__ = ["CheckpointWriter", "check_compatible", "host_copy", "init_loader_worker",
           "loader_seed", "part_name", "rank_state", "read_rank_part", "restore_training_state",
           "rng_state", "seed_process", "set_rng_state", "training_state"]


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


def loader_seed(seed: int, rank: int, iteration: int) -> int:
    """Seed of the DataLoader's own generator, from which PyTorch draws the workers' base seed."""
    return int(np.random.SeedSequence([seed, rank, iteration]).generate_state(1, np.uint64)[0]
               % 2**63)


def init_loader_worker(worker_id: int, release=None) -> None:  # noqa: ARG001 - worker_init_fn
    """In a DataLoader worker: ignore the stop signals (SIGINT, SIGUSR1, SIGUSR2; SIGTERM until
    ``release`` is set, when the main process shuts its workers down), which a scheduler sends to
    the whole process group: the main process saves first.  Python and numpy are seeded from the
    worker's torch seed (drawn from :func:`loader_seed`)."""
    for sig in (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)

    def on_term(signum, frame):  # noqa: ARG001
        if release is not None and release.is_set():
            os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


# -- the checkpoint of a training run ---------------------------------------------------------


def rank_state(parts: GANParts, device: torch.device) -> dict:
    """This process's own part of the checkpoint: its RNG states and its image pools."""
    return {"rng": rng_state(device),
            "pools": {"shape": parts.shape_pool.state_dict(),
                      "appearance": parts.appearance_pool.state_dict()}}


def part_name(rank: int, iteration: int) -> str:
    """The file name of a rank's part of the checkpoint of ``iteration`` (several processes)."""
    return f"rank{rank}-{iteration:09d}.pt"


def read_rank_part(folder: Path, name: str, rank: int, iteration: int) -> dict:
    """A rank's part named in ``latest.pt``; an error unless it is that rank's, of that save."""
    path = Path(folder) / name
    try:
        part = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: part of the checkpoint of iteration {iteration} is "
                              "missing (every process needs the run folder)") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways
        raise CheckpointError(f"{path}: unreadable checkpoint part ({exc})") from None
    if not isinstance(part, dict) or (part.get("rank"), part.get("iteration")) != (rank, iteration):
        raise CheckpointError(f"{path}: not rank {rank}'s part of the checkpoint of iteration "
                              f"{iteration}: the checkpoint is incomplete")
    return part["state"]


def host_copy(tree: Any) -> Any:
    """A copy of ``tree`` whose tensors are new CPU tensors (the training goes on meanwhile)."""
    if torch.is_tensor(tree):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, dict):
        return {k: host_copy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(host_copy(v) for v in tree)
    return tree


class CheckpointWriter:
    """One save at a time in a background thread; :meth:`wait` joins it and returns its error
    (None when it succeeded), :meth:`failed` returns the error of a finished save at once."""

    def __init__(self) -> None:
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[str] = None
        self.cancel = threading.Event()
        self.write_s = 0.0

    def submit(self, write: Callable[[], None]) -> None:
        self.wait()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(write,), name="checkpoint-writer")
        self._thread.start()

    def _run(self, write: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        try:
            write()
        except BaseException as exc:  # noqa: BLE001 - reported to the training loop
            self._error = str(exc) if isinstance(exc, CheckpointError) else f"{type(exc).__name__}: {exc}"
        self.write_s = time.perf_counter() - t0

    def failed(self) -> Optional[str]:
        done = self._thread is None or not self._thread.is_alive()
        return self._error if done else None

    def wait(self, timeout: Optional[float] = None) -> Optional[str]:
        """Join the save (after ``timeout`` seconds, tell it to give up waiting for other ranks'
        parts, then join)."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.cancel.set()
                self._thread.join()
            self._thread = None
        return self._error


def training_state(cfg: Config, parts: GANParts, iteration: int, per_rank: list,
                   world_size: int) -> dict:
    """The checkpoint: networks, optimisers, grad scaler, iteration, config, the ranks' parts
    (``per_rank``: the states themselves for one process, else their file names) and the
    versions that wrote it.  The sampler position is the iteration itself."""
    generator, shape_d, appearance_d = parts.networks()
    return {
        "config": cfg.to_dict(),
        "iteration": iteration,
        "generator": generator.state_dict(),
        "shape_discriminator": shape_d.state_dict(),
        "appearance_discriminator": appearance_d.state_dict(),
        "optimizers": {
            "generator": parts.opt_g.state_dict(),
            "shape_discriminator": parts.opt_shape_d.state_dict(),
            "appearance_discriminator": parts.opt_appearance_d.state_dict(),
        },
        "grad_scaler": parts.scaler.state_dict(),
        "ranks": per_rank,
        "sampler": {"seed": cfg.train.seed, "iteration": iteration, "world_size": world_size},
        "world_size": world_size,
        "versions": versions(),
    }


def restore_training_state(parts: GANParts, state: dict, cfg: Config, *, rank: int,
                           world_size: int, device: torch.device,
                           allow_world_size_change: bool = False, source: str = "checkpoint",
                           notice=print) -> int:
    """Load a :func:`training_state` (read to the CPU) into ``parts``; returns its iteration.

    Each part goes where it belongs: the networks and optimiser states through their own
    ``load_state_dict`` (onto their parameters' device), the pools to ``device``, the RNG states
    stay on the CPU.  A checkpoint of another model or image size is refused; one written by
    another number of processes too, unless ``allow_world_size_change``, which re-seeds every
    rank from (seed, rank, iteration) and says so.
    """
    check_compatible(config_from_dict(state["config"], source=source), cfg, source)
    saved_world = int(state.get("world_size", 1))
    if saved_world != world_size and not allow_world_size_change:
        raise TrainingError(
            f"{source}: the checkpoint was written by {saved_world} process(es), this run "
            f"has {world_size}; an exact resume needs the same number. Pass "
            "--allow-world-size-change to continue anyway (every rank is re-seeded from "
            "(seed, rank, iteration); the run is then no longer the one that would have been)")
    for net, key in zip(parts.networks(), ("generator", "shape_discriminator",
                                           "appearance_discriminator")):
        net.load_state_dict(state[key])
    for opt, key in zip(parts.optimizers(), ("generator", "shape_discriminator",
                                             "appearance_discriminator")):
        opt.load_state_dict(state["optimizers"][key])
    if state.get("grad_scaler"):
        parts.scaler.load_state_dict(state["grad_scaler"])
    iteration = int(state["iteration"])
    # checkpoints before per-rank state hold rank 0's pools and RNG only
    ranks = state.get("ranks") or [{"rng": state["rng"], "pools": state["pools"]}]
    exact = saved_world == world_size and len(ranks) == world_size
    if rank < len(ranks):  # with another world size (allowed above), a rank keeps the pools
        # of the rank of the same number when there was one
        for pool, key in ((parts.shape_pool, "shape"), (parts.appearance_pool, "appearance")):
            saved = ranks[rank]["pools"][key]
            pool.load_state_dict({**saved, "images": saved["images"].to(device)})
    if exact:
        line = set_rng_state(ranks[rank]["rng"], device)
        if line:
            notice(f"resume: {line}")
    else:
        seed_process(cfg.train.seed, rank, iteration)
        notice(f"resumed a {saved_world}-process checkpoint with {world_size} process(es): "
               f"every rank re-seeded from (seed {cfg.train.seed}, rank, iteration {iteration}); "
               "not an exact continuation")
    return iteration


def check_compatible(saved: Config, cfg: Config, source: str) -> None:
    """A resumed run must train the same networks on the same image size."""
    if saved.model != cfg.model:
        diffs = _diff(saved.model, cfg.model, "model")
        raise TrainingError(f"{source}: the checkpoint was trained with a different model "
                            "config: " + "; ".join(diffs[:8]))
    if (saved.data.height, saved.data.width) != (cfg.data.height, cfg.data.width):
        raise TrainingError(
            f"{source}: the checkpoint was trained at {saved.data.height}x{saved.data.width}, "
            f"this config uses {cfg.data.height}x{cfg.data.width}")


def _diff(a: Any, b: Any, prefix: str) -> list[str]:
    out = []
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(va):
            out += _diff(va, vb, f"{prefix}.{f.name}")
        elif va != vb:
            out.append(f"{prefix}.{f.name}: checkpoint {va!r}, config {vb!r}")
    return out
