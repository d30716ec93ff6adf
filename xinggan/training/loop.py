"""Everything around the training step: devices, wrapping, checkpoints, signals, logging.

:class:`Trainer` builds the networks, losses (:func:`xinggan.losses.build_losses`), pools and
optimisers from a config, wraps the networks for DDP and ``torch.compile`` where asked, and runs
:func:`xinggan.training.step.train_step` until the schedule ends.  The paper's iteration itself
is in :mod:`xinggan.training.step`.

Checkpoints (``<run>/checkpoints/latest.pt``, written atomically by rank 0) hold everything
needed to continue exactly: networks, optimisers, grad scaler, iteration, the resolved config,
and for **every rank** its image pools and RNG states (:mod:`xinggan.training.state`).  The
sampler position is the iteration itself.  A resume with another number of processes is refused
unless ``allow_world_size_change`` is set, which re-seeds every rank from (seed, rank,
iteration) and says so.

SIGINT / SIGTERM (to the main process or to the whole process group, with or without torchrun):
the main process finishes the iteration, saves, shuts the DataLoader workers down and returns
normally; the workers ignore both signals.  A second signal during the save is ignored.

When something asked for cannot run as asked (compile unavailable, no fused attention kernel),
one line says what runs instead, at start on rank 0, and the same lines go to
``<run>/notices.txt``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from xinggan.checkpoint import load_checkpoint, save_checkpoint
from xinggan.config import Config, ConfigError, config_from_dict, save_config
from xinggan.precision import PrecisionError, autocast, resolve_amp
from xinggan.training.state import (gather_to_main, loader_seed, rng_state, seed_process,
                                    seed_worker, set_rng_state)
from xinggan.training.step import GANParts, TrainingError, lr_factor, train_step

__all__ = ["Trainer", "distributed_context", "pick_device", "versions"]


def distributed_context() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (1 process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, local, world


def pick_device(name: str, local_rank: Optional[int] = None,
                world_size: Optional[int] = None) -> torch.device:
    """The device of this process.

    ``auto``: CUDA when there is one, else the CPU; ``cuda``: this process's GPU, the one of its
    local rank (torchrun's ``LOCAL_RANK``; ``local_rank`` and ``world_size`` default to
    torchrun's environment); ``cpu`` or ``cuda:N`` as named.  Refused with a
    :class:`ConfigError`: CUDA where there is none, a local rank without its GPU, and
    ``cuda:N`` in a run of several processes (each process takes the GPU of its local rank;
    choose the GPUs with ``CUDA_VISIBLE_DEVICES``).
    """
    _, env_local, env_world = distributed_context()
    local_rank = env_local if local_rank is None else local_rank
    world_size = env_world if world_size is None else world_size
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not name.startswith("cuda"):
        return torch.device(name)
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: no CUDA device is available here (use cpu or auto)")
    if name != "cuda" and world_size > 1:
        raise ConfigError(
            f"device {name!r} names one GPU, but this run has {world_size} processes and each "
            "takes the GPU of its local rank: set train.device to cuda or auto (choose the GPUs "
            "with CUDA_VISIBLE_DEVICES)")
    device = torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device}: only {torch.cuda.device_count()} GPU(s) are visible "
                          f"here (local rank {local_rank})")
    return device


class Trainer:
    """Builds networks, losses, optimisers and data from a config and runs the loop."""

    def __init__(self, cfg: Config, run_dir: str | Path, *, device: Optional[torch.device] = None,
                 rank: int = 0, world_size: int = 1, progress: bool = True,
                 tensorboard: bool = True, dataset: Any = None,
                 allow_world_size_change: bool = False) -> None:
        from xinggan.losses import build_image_pools, build_losses
        from xinggan.models import build_discriminators, build_generator

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.device = device or pick_device(cfg.train.device, world_size=world_size)
        self.progress = progress and self.is_main
        self.use_tensorboard = tensorboard and self.is_main
        self.allow_world_size_change = allow_world_size_change
        self.notices: list[str] = []
        self._probe_pending = False  # set by _compile on CUDA: see _probe_attention
        if cfg.train.batch_size % world_size:
            raise ConfigError(
                f"train.batch_size: the global batch {cfg.train.batch_size} is not divisible by "
                f"the {world_size} processes")
        self.local_batch = cfg.train.batch_size // world_size
        amp = cfg.train.amp
        try:  # bf16 autocast also runs on CPU; fp16 needs CUDA (its grad scaler)
            self.amp_dtype, precision_line = resolve_amp(amp, self.device)
        except PrecisionError as error:
            raise ConfigError(f"train.amp: {error}") from None
        if amp == "auto" or "emulated" in precision_line:
            self.notice(f"train.amp={amp}: {precision_line}")

        # Identical initial weights on every rank (DDP would broadcast them anyway).
        torch.manual_seed(cfg.train.seed)
        generator = build_generator(cfg)
        shape_d, appearance_d = build_discriminators(cfg)
        if cfg.train.sync_batchnorm and world_size > 1:
            generator, shape_d, appearance_d = (nn.SyncBatchNorm.convert_sync_batchnorm(m)
                                                for m in (generator, shape_d, appearance_d))
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.preserve_format
        self.generator = generator.to(self.device, memory_format=self.memory_format)
        self.shape_d = shape_d.to(self.device, memory_format=self.memory_format)
        self.appearance_d = appearance_d.to(self.device, memory_format=self.memory_format)
        self.opt_g = self._adam(self.generator)
        self.opt_shape_d = self._adam(self.shape_d)
        self.opt_appearance_d = self._adam(self.appearance_d)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)
        self.losses = build_losses(cfg).to(self.device)
        self.shape_pool, self.appearance_pool = build_image_pools(cfg)

        # Per-rank seeding of everything random after initialisation (dropout, pools).
        seed_process(cfg.train.seed, rank)

        g_train, shape_d_train, appearance_d_train = self.generator, self.shape_d, self.appearance_d
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            g = cfg.model.generator
            # ablations that leave parameters out of the graph (e.g. the last block's shape
            # update when no fusion head reads the shape code) need DDP's unused-parameter scan
            unused = not (g.fusion and g.appearance_update and g.shape_update)
            g_train = DDP(self.generator, device_ids=ids, find_unused_parameters=unused)
            shape_d_train = DDP(self.shape_d, device_ids=ids)
            appearance_d_train = DDP(self.appearance_d, device_ids=ids)
        if cfg.train.compile:
            g_train = self._compile(g_train)
        self.parts = GANParts(
            generator=g_train, shape_d=shape_d_train, appearance_d=appearance_d_train,
            opt_g=self.opt_g, opt_shape_d=self.opt_shape_d, opt_appearance_d=self.opt_appearance_d,
            losses=self.losses, shape_pool=self.shape_pool, appearance_pool=self.appearance_pool,
            scaler=self.scaler, loss_cfg=cfg.loss, autocast=self._autocast)

        self.dataset = dataset
        self.iteration = 0
        self._stop_signal: Optional[int] = None
        self._saving = False
        self._writer = None
        self._grid_batch = None

    # -- set-up ----------------------------------------------------------------------
    def _adam(self, module: nn.Module) -> torch.optim.Optimizer:
        o = self.cfg.optim
        return torch.optim.Adam(module.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                                weight_decay=o.weight_decay)

    def _autocast(self):
        return autocast(self.device, self.amp_dtype)

    def _compile(self, module: nn.Module) -> nn.Module:
        """``torch.compile(module)``; eager mode, with a notice, where Inductor cannot run.

        The attention implementation is fixed before compiling: ``auto`` becomes what it picks
        in eager mode on this device (``chunked`` on CPU; on CUDA, SDPA only where a fused
        kernel accepts the shapes, see :func:`xinggan.ops.attention.resolve_attention_impl`),
        so a compiled graph never runs SDPA's math path with its N x N maps.
        """
        try:
            from torch._inductor import config as _inductor_config  # noqa: F401
        except Exception as error:  # pragma: no cover - an install without Inductor
            self.notice(f"train.compile: torch.compile is unavailable ({type(error).__name__}: "
                        f"{error}); training runs in eager mode")
            return module
        self._probe_pending = self.device.type == "cuda"
        return torch.compile(module)

    def _probe_attention(self, batch: dict) -> None:
        """Before the first compiled step on CUDA: one eager forward and backward of the plain
        generator on the first batch, so that ``attention_impl: auto`` has asked PyTorch which
        fused kernel takes each attention shape (the compiled graph reuses the answers).  RNG
        states and BatchNorm statistics are put back, and the gradients dropped."""
        from xinggan.ops import attention

        self._probe_pending = False
        b = self._to_device(batch)
        buffers = {k: v.clone() for k, v in self.generator.named_buffers()}
        with torch.random.fork_rng(devices=[self.device]), self._autocast():
            out = self.generator(b["source_image"], b["source_pose"], b["target_pose"])
            out.float().mean().backward()
        self.generator.zero_grad(set_to_none=True)
        with torch.no_grad():
            for k, v in self.generator.named_buffers():
                v.copy_(buffers[k])
        for key, kernels in attention.SDPA_KERNELS.items():
            if not any(kernels.values()):
                self.notice(f"attention_impl auto: no fused SDPA kernel for q {key[2]}, "
                            f"v {key[4]} ({key[1]}); that attention runs 'chunked'")

    def notice(self, line: str) -> None:
        """Say once, at start, what runs instead of what was asked (rank 0), and keep it."""
        if line in self.notices:
            return
        self.notices.append(line)
        if self.is_main:
            print(f"note: {line}", file=sys.stderr)
            if getattr(self, "_notices_to_file", False):  # else fit() writes it at start
                with open(self.run_dir / "notices.txt", "a") as handle:
                    handle.write(line + "\n")

    def current_lr(self, iteration: Optional[int] = None) -> float:
        o = self.cfg.optim
        it = self.iteration if iteration is None else iteration
        return o.lr * lr_factor(it, o.lr_constant_iterations, o.lr_decay_iterations,
                                o.lr_step_iterations)

    def _to_device(self, batch: dict) -> dict:
        out = {}
        for key, value in batch.items():
            if torch.is_tensor(value):
                value = value.to(self.device, non_blocking=True)
                if value.dim() == 4:
                    value = value.contiguous(memory_format=self.memory_format)
            out[key] = value
        return out

    def train_step(self, batch: dict) -> dict[str, float]:
        """One iteration (:func:`xinggan.training.step.train_step`) at the scheduled rate."""
        lr = self.current_lr()
        result = train_step(self.parts, self._to_device(batch), lr, self.iteration + 1)
        self.iteration += 1
        result["lr"] = lr
        return result

    # -- state -----------------------------------------------------------------------
    def state_dict(self, per_rank: Optional[list] = None) -> dict:
        """The checkpoint.  ``per_rank``: every rank's ``{"rng", "pools"}`` (from
        :meth:`_rank_state` gathered on rank 0); this process's alone when None."""
        if per_rank is None:
            per_rank = [self._rank_state()]
        return {
            "config": self.cfg.to_dict(),
            "iteration": self.iteration,
            "generator": self.generator.state_dict(),
            "shape_discriminator": self.shape_d.state_dict(),
            "appearance_discriminator": self.appearance_d.state_dict(),
            "optimizers": {
                "generator": self.opt_g.state_dict(),
                "shape_discriminator": self.opt_shape_d.state_dict(),
                "appearance_discriminator": self.opt_appearance_d.state_dict(),
            },
            "grad_scaler": self.scaler.state_dict(),
            "ranks": per_rank,
            "sampler": {"seed": self.cfg.train.seed, "iteration": self.iteration,
                        "world_size": self.world_size},
            "world_size": self.world_size,
            "versions": versions(),
        }

    def _rank_state(self) -> dict:
        return {"rng": rng_state(self.device),
                "pools": {"shape": self.shape_pool.state_dict(),
                          "appearance": self.appearance_pool.state_dict()}}

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        saved = config_from_dict(state["config"], source=source)
        self._check_compatible(saved, source)
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.world_size and not self.allow_world_size_change:
            raise TrainingError(
                f"{source}: the checkpoint was written by {saved_world} process(es), this run "
                f"has {self.world_size}; an exact resume needs the same number. Pass "
                "--allow-world-size-change to continue anyway (every rank is re-seeded from "
                "(seed, rank, iteration); the run is then no longer the one that would have been)")
        self.generator.load_state_dict(state["generator"])
        self.shape_d.load_state_dict(state["shape_discriminator"])
        self.appearance_d.load_state_dict(state["appearance_discriminator"])
        opts = state["optimizers"]
        self.opt_g.load_state_dict(opts["generator"])
        self.opt_shape_d.load_state_dict(opts["shape_discriminator"])
        self.opt_appearance_d.load_state_dict(opts["appearance_discriminator"])
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.iteration = int(state["iteration"])
        if "ranks" in state:
            ranks = state["ranks"]
        else:  # checkpoints before per-rank state: rank 0's pools and RNG only
            ranks = [{"rng": state["rng"], "pools": state["pools"]}]
        if saved_world == self.world_size and len(ranks) == self.world_size:
            mine = ranks[self.rank]
            self._load_pools(mine["pools"])
            line = set_rng_state(mine["rng"], self.device)
            if line:
                self.notice(f"resume: {line}")
        else:
            # Another world size (allowed above): a rank keeps the pools of the rank of the
            # same number when there was one, and every rank starts new random streams.
            if self.rank < len(ranks):
                self._load_pools(ranks[self.rank]["pools"])
            seed_process(self.cfg.train.seed, self.rank, self.iteration)
            self.notice(f"resumed a {saved_world}-process checkpoint with {self.world_size} "
                        f"process(es): every rank re-seeded from (seed {self.cfg.train.seed}, "
                        f"rank, iteration {self.iteration}); not an exact continuation")

    def _load_pools(self, pools: dict) -> None:
        for pool, key in ((self.shape_pool, "shape"), (self.appearance_pool, "appearance")):
            pool.load_state_dict({**pools[key], "images": pools[key]["images"].to(self.device)})

    def _check_compatible(self, saved: Config, source: str) -> None:
        """A resumed run must train the same networks on the same data layout."""
        if saved.model != self.cfg.model:
            diffs = _diff(saved.model, self.cfg.model, "model")
            raise TrainingError(f"{source}: the checkpoint was trained with a different model "
                                "config: " + "; ".join(diffs[:8]))
        if (saved.data.height, saved.data.width) != (self.cfg.data.height, self.cfg.data.width):
            raise TrainingError(
                f"{source}: the checkpoint was trained at {saved.data.height}x{saved.data.width}, "
                f"this config uses {self.cfg.data.height}x{self.cfg.data.width}")

    # -- checkpoints -------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "latest.pt"

    def save(self) -> Optional[Path]:
        """Write the checkpoint (a collective: every rank sends its own state to rank 0)."""
        per_rank = gather_to_main(self._rank_state(), self.rank, self.world_size)
        if not self.is_main:
            return None
        self._saving = True
        try:
            return save_checkpoint(self.state_dict(per_rank), self.checkpoint_path)
        finally:
            self._saving = False

    def resume(self) -> bool:
        path = self.checkpoint_path
        if not path.is_file():
            return False
        # Everything is read to the CPU, then each part goes where it belongs: the networks and
        # optimiser states through their own load_state_dict, the pools to this device, the
        # RNG states stay on the CPU (the generators accept only CPU byte tensors).
        state = load_checkpoint(path, map_location="cpu")
        self.load_state_dict(state, source=str(path))
        return True

    # -- data ---------------------------------------------------------------------------
    def make_loader(self, start_iteration: int) -> DataLoader:
        from xinggan.data import IterationSampler, PairDataset

        if self.dataset is None:
            self.dataset = PairDataset.from_config(self.cfg.data, "train")
        sampler = IterationSampler(len(self.dataset), self.cfg.train.batch_size,
                                   seed=self.cfg.train.seed, rank=self.rank,
                                   world_size=self.world_size)
        sampler.set_iteration(start_iteration)
        workers = self.cfg.data.num_workers
        self._release_workers = None
        if workers > 0:
            self._release_workers = torch.multiprocessing.get_context().Event()
        return DataLoader(
            self.dataset, batch_size=self.local_batch, sampler=sampler, drop_last=True,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            persistent_workers=False, prefetch_factor=2 if workers > 0 else None,
            worker_init_fn=(functools.partial(seed_worker, release=self._release_workers)
                            if workers > 0 else None),
            # its own RNG, so that starting a loader never draws from the global one
            generator=torch.Generator().manual_seed(
                loader_seed(self.cfg.train.seed, self.rank, start_iteration)),
        )

    def _shut_down_workers(self, iterator) -> None:
        """Let the loader workers go (they ignore SIGTERM until released) and stop them now,
        before the signal handlers go back, even when an exception still holds the iterator."""
        if getattr(self, "_release_workers", None) is not None:
            self._release_workers.set()
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    # -- logging ------------------------------------------------------------------------
    def _log_stats(self, stats: dict) -> None:
        with open(self.run_dir / "stats.jsonl", "a") as handle:
            handle.write(json.dumps(stats) + "\n")
        if self._writer is not None:
            for key, value in stats.items():
                if key not in ("iteration", "time"):
                    self._writer.add_scalar(key, value, stats["iteration"])

    def _log_images(self) -> None:
        from PIL import Image

        from xinggan.visualize import pair_grid

        if self._grid_batch is None:
            from xinggan.data import PairDataset

            try:
                data = PairDataset.from_config(self.cfg.data, "test")
            except Exception:  # noqa: BLE001 - the test split is optional for training
                data = self.dataset
            n = min(self.cfg.train.grid_pairs, len(data))
            items = [data[i] for i in range(n)]
            self._grid_batch = {k: torch.stack([it[k] for it in items]) for k in
                                ("source_image", "source_pose", "target_pose", "target_image")}
        b = self._to_device(self._grid_batch)
        g = self.generator
        was_training = g.training
        g.eval()
        with torch.no_grad(), self._autocast():
            fake = g(b["source_image"], b["source_pose"], b["target_pose"]).float()
        g.train(was_training)
        grid = pair_grid(b["source_image"], b["source_pose"], b["target_pose"], fake,
                         b["target_image"])
        out = self.run_dir / "samples"
        out.mkdir(exist_ok=True)
        Image.fromarray(grid).save(out / f"iter_{self.iteration:07d}.png")
        if self._writer is not None:
            self._writer.add_image("samples", grid, self.iteration, dataformats="HWC")

    # -- signals ------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if self._saving or (self._stop_signal is not None and signum != signal.SIGINT):
            return  # already stopping: the save in progress (or about to start) goes on
        if self._stop_signal is not None:  # a second Ctrl-C outside the save: stop now
            raise KeyboardInterrupt
        self._stop_signal = signum
        if self.progress:
            print(f"\nsignal {signum}: finishing the iteration, saving, exiting", file=sys.stderr)

    def _stop_requested(self) -> bool:
        flag = self._stop_signal is not None
        if self.world_size > 1 and dist.is_initialized():  # every rank stops at the same step
            t = torch.tensor([1.0 if flag else 0.0], device=self.device if
                             dist.get_backend() == "nccl" else "cpu")
            dist.all_reduce(t)
            flag = bool(t.item() > 0)
        return flag

    # -- the loop -------------------------------------------------------------------------
    def fit(self, resume: bool = False, max_iterations: Optional[int] = None) -> dict:
        """Train to ``train.iterations`` (or ``max_iterations``), saving as configured."""
        cfg = self.cfg.train
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
            (self.run_dir / "versions.json").write_text(json.dumps(versions(), indent=1))
            for line in self.notices:  # said while setting up
                with open(self.run_dir / "notices.txt", "a") as handle:
                    handle.write(line + "\n")
            self._notices_to_file = True
            if self.use_tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        if resume and self.resume() and self.is_main:
            print(f"resumed from {self.checkpoint_path} at iteration {self.iteration}")
        end = cfg.iterations if max_iterations is None else min(cfg.iterations, max_iterations)
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):  # before the workers start
                handlers[sig] = signal.signal(sig, self._on_signal)
        for net in (self.generator, self.shape_d, self.appearance_d):
            net.train()
        last: dict = {}
        stopped = "done"
        loader = iterator = bar = None
        try:
            if self.iteration >= end:
                return {"iteration": self.iteration, "stopped": "done"}
            loader = self.make_loader(self.iteration)
            iterator = iter(loader)
            if self.progress:
                from tqdm import tqdm

                bar = tqdm(total=end, initial=self.iteration, dynamic_ncols=True, unit="it")
            t0, n0 = time.perf_counter(), self.iteration
            while self.iteration < end:
                batch = next(iterator)
                if self._probe_pending:
                    self._probe_attention(batch)
                last = self.train_step(batch)
                it = self.iteration
                if bar is not None:
                    bar.update(1)
                if it % cfg.log_every == 0 or it == end:
                    elapsed = time.perf_counter() - t0
                    ips = (it - n0) * cfg.batch_size / max(elapsed, 1e-9)
                    stats = {"iteration": it, **{k: round(v, 6) for k, v in last.items()},
                             "images_per_s": round(ips, 3), "time": time.time()}
                    if self.is_main:
                        self._log_stats(stats)
                    if bar is not None:
                        bar.set_postfix(l1=f"{last['g_l1']:.3f}", gan=f"{last['g_gan']:.3f}",
                                        d=f"{last['d_shape'] + last['d_appearance']:.3f}",
                                        ips=f"{ips:.1f}")
                    t0, n0 = time.perf_counter(), it
                stop = self._stop_requested()
                if it % cfg.checkpoint_every == 0 or it == end or stop:
                    self.save()
                    image_every = cfg.image_every or cfg.checkpoint_every
                    if self.is_main and (it % image_every == 0 or it == end):
                        self._log_images()
                if stop:
                    stopped = "signal"
                    if self.is_main:
                        print(f"stopped at iteration {it}; checkpoint {self.checkpoint_path}",
                              file=sys.stderr)
                    break
        finally:
            if bar is not None:
                bar.close()
            self._shut_down_workers(iterator)
            del iterator, loader
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        return {"iteration": self.iteration, "stopped": stopped, **last}


def _diff(a: Any, b: Any, prefix: str) -> list[str]:
    out = []
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(va):
            out += _diff(va, vb, f"{prefix}.{f.name}")
        elif va != vb:
            out.append(f"{prefix}.{f.name}: checkpoint {va!r}, config {vb!r}")
    return out


def versions() -> dict:
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
    }
