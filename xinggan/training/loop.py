"""The training loop: :class:`Trainer` runs :func:`~xinggan.training.step.train_step` until the
schedule ends, saving and logging on the way.

It puts together four pieces, each in its own module: the parts a run updates
(:func:`~xinggan.training.parts.build_parts`), the checkpoint state and its resume checks
(:mod:`xinggan.training.state`), the run log (:class:`~xinggan.training.runlog.RunLog`: stats,
TensorBoard, notices, image grids, progress) and the stop-signal guard
(:class:`~xinggan.training.signals.StopGuard`).

The newest checkpoint is ``<run>/checkpoints/latest.pt``, written atomically by rank 0 every
``train.checkpoint_every`` iterations, at the end and on a stop signal; it holds everything
needed to continue exactly, every rank's RNG states and pools included.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from xinggan.checkpoint import load_checkpoint, save_checkpoint
from xinggan.config import Config
from xinggan.data import IterationSampler, PairDataset
from xinggan.runtime import pick_device
from xinggan.training.parts import build_parts, probe_attention
from xinggan.training.runlog import RunLog
from xinggan.training.signals import StopGuard
from xinggan.training.state import (gather_to_main, init_loader_worker, loader_seed, rank_state,
                                    restore_training_state, training_state)
from xinggan.training.step import TrainingError, lr_factor, train_step
from xinggan.visualize import pair_grid

__all__ = ["Trainer"]

GRID_KEYS = ("source_image", "source_pose", "target_pose", "target_image")


class Trainer:
    """Builds a run from a config and trains it: ``Trainer(cfg, run_dir).fit(resume=True)``."""

    def __init__(self, cfg: Config, run_dir: str | Path, *, device: Optional[torch.device] = None,
                 rank: int = 0, world_size: int = 1, progress: bool = True,
                 tensorboard: bool = True, dataset: Any = None,
                 allow_world_size_change: bool = False) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.rank, self.world_size, self.is_main = rank, world_size, rank == 0
        self.device = device or pick_device(cfg.train.device, world_size=world_size)
        self.allow_world_size_change = allow_world_size_change
        self.log = RunLog(self.run_dir, is_main=self.is_main, show_progress=progress,
                          tensorboard=tensorboard)
        self.parts = build_parts(cfg, self.device, rank, world_size, notice=self.log.notice)
        self.generator, self.shape_d, self.appearance_d = self.parts.networks()
        self.dataset = dataset
        self.iteration = 0
        self.stop = StopGuard(self.device, world_size, verbose=self.is_main)
        # before the first compiled step on CUDA, ask which fused attention kernels run
        self._probe_pending = bool(cfg.train.compile) and self.device.type == "cuda"
        self._grid_batch: Optional[dict] = None
        self._collectives = world_size > 1 and dist.is_available() and dist.is_initialized()
        # small collectives of Python objects (checkpoint state, the resume decision) go over
        # gloo on the CPU: over NCCL they would stage every rank's pools on rank 0's GPU
        self._cpu_group = (dist.new_group(backend="gloo")
                           if self._collectives and dist.get_backend() == "nccl" else None)

    # -- what the parts are called from outside ----------------------------------------
    notices = property(lambda self: self.log.notices)
    losses = property(lambda self: self.parts.losses)
    opt_g = property(lambda self: self.parts.opt_g)
    shape_pool = property(lambda self: self.parts.shape_pool)
    appearance_pool = property(lambda self: self.parts.appearance_pool)
    amp_dtype = property(lambda self: self.parts.amp_dtype)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "latest.pt"

    def current_lr(self, iteration: Optional[int] = None) -> float:
        o = self.cfg.optim
        it = self.iteration if iteration is None else iteration
        return o.lr * lr_factor(it, o.lr_constant_iterations, o.lr_decay_iterations,
                                o.lr_step_iterations)

    def step(self, batch: dict) -> dict[str, float]:
        """One iteration on a batch already on the device, at the scheduled learning rate."""
        lr = self.current_lr()
        result = train_step(self.parts, batch, lr, self.iteration + 1)
        self.iteration += 1
        return {**result, "lr": lr}

    # -- checkpoints -----------------------------------------------------------------------
    def save(self) -> Optional[Path]:
        """Write the checkpoint (a collective: every rank sends its own state to rank 0)."""
        per_rank = gather_to_main(rank_state(self.parts, self.device), self.rank,
                                  self.world_size, group=self._cpu_group)
        if not self.is_main:
            return None
        with self.stop.saving():
            return save_checkpoint(training_state(self.cfg, self.parts, self.iteration,
                                                  per_rank, self.world_size),
                                   self.checkpoint_path)

    def resume(self) -> bool:
        """Continue from ``latest.pt`` when there is one (read to the CPU first).  Rank 0, which
        writes the checkpoint, decides for every rank: when it resumes and another rank cannot
        see the file, every rank stops with an error naming those ranks, instead of some
        training from iteration 0 beside the others."""
        found = self.checkpoint_path.is_file()
        if self._collectives:
            seen = [None] * self.world_size
            dist.all_gather_object(seen, found, group=self._cpu_group)
            blind = [r for r, ok in enumerate(seen) if not ok]
            if seen[0] and blind:
                raise TrainingError(
                    f"rank 0 resumes from {self.checkpoint_path}, which rank(s) "
                    f"{', '.join(map(str, blind))} cannot read: every process needs the run "
                    "folder (a shared file system)")
            found = seen[0]
        if not found:
            return False
        state = load_checkpoint(self.checkpoint_path, map_location="cpu")
        self.iteration = restore_training_state(
            self.parts, state, self.cfg, rank=self.rank, world_size=self.world_size,
            device=self.device, allow_world_size_change=self.allow_world_size_change,
            source=str(self.checkpoint_path), notice=self.log.notice)
        return True

    # -- data --------------------------------------------------------------------------------
    def make_loader(self, start_iteration: int) -> tuple[DataLoader, Any]:
        """This rank's loader from ``start_iteration`` on, and the event that releases its
        workers from ignoring SIGTERM (None without workers)."""
        if self.dataset is None:
            self.dataset = PairDataset.from_config(self.cfg.data, "train")
        sampler = IterationSampler(len(self.dataset), self.cfg.train.batch_size,
                                   seed=self.cfg.train.seed, rank=self.rank,
                                   world_size=self.world_size)
        sampler.set_iteration(start_iteration)
        workers = self.cfg.data.num_workers
        release = torch.multiprocessing.get_context().Event() if workers > 0 else None
        loader = DataLoader(
            self.dataset, batch_size=self.cfg.train.batch_size // self.world_size,
            sampler=sampler, drop_last=True, num_workers=workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            prefetch_factor=2 if workers > 0 else None,
            worker_init_fn=(functools.partial(init_loader_worker, release=release)
                            if workers > 0 else None),
            # its own RNG, so that starting a loader never draws from the global one
            generator=torch.Generator().manual_seed(
                loader_seed(self.cfg.train.seed, self.rank, start_iteration)))
        return loader, release

    def _to_device(self, batch: dict) -> dict:
        out = {}
        for key, value in batch.items():
            if torch.is_tensor(value):
                value = value.to(self.device, non_blocking=True)
                if value.dim() == 4:
                    value = value.contiguous(memory_format=self.parts.memory_format)
            out[key] = value
        return out

    # -- image grids -------------------------------------------------------------------------
    def _log_images(self) -> None:
        """A grid of the first ``train.grid_pairs`` test pairs (train pairs without a test
        split): source, poses, generated, target.  Rank 0 only, so a failure here (an unreadable
        test image, no memory for the forward) becomes a notice: it must not stop one rank."""
        try:
            self.log.grid(self._grid(), self.iteration)
        except Exception as error:  # noqa: BLE001 - see above
            self.log.notice(f"image grid at iteration {self.iteration} skipped: "
                            f"{type(error).__name__}: {error}")

    def _grid(self):
        if self._grid_batch is None:
            try:
                data = PairDataset.from_config(self.cfg.data, "test")
            except Exception:  # noqa: BLE001 - the test split is optional for training
                data = self.dataset
            items = [data[i] for i in range(min(self.cfg.train.grid_pairs, len(data)))]
            self._grid_batch = {k: torch.stack([it[k] for it in items]) for k in GRID_KEYS}
        b = self._to_device(self._grid_batch)
        was_training = self.generator.training
        self.generator.eval()
        try:
            with torch.no_grad(), self.parts.autocast():
                fake = self.generator(b["source_image"], b["source_pose"],
                                      b["target_pose"]).float()
        finally:
            self.generator.train(was_training)
        return pair_grid(b["source_image"], b["source_pose"], b["target_pose"], fake,
                         b["target_image"])

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, resume: bool = False, max_iterations: Optional[int] = None) -> dict:
        """Train to ``train.iterations`` (or ``max_iterations``), saving as configured."""
        cfg = self.cfg.train
        self.log.start(self.cfg)
        if resume and self.resume() and self.is_main:
            print(f"resumed from {self.checkpoint_path} at iteration {self.iteration}")
        end = cfg.iterations if max_iterations is None else min(cfg.iterations, max_iterations)
        image_every = cfg.image_every or cfg.checkpoint_every
        last, stopped = {}, "done"
        for net in (self.generator, self.shape_d, self.appearance_d):
            net.train()
        try:
            with self.stop, _Batches(self, end) as batches:
                self.log.open_progress(end, self.iteration)
                t0, n0 = time.perf_counter(), self.iteration
                for batch in batches:
                    if self._probe_pending:
                        self._probe_pending = False
                        probe_attention(self.parts, batch, self.log.notice)
                    last = self.step(batch)
                    it = self.iteration
                    self.log.step()
                    if it % cfg.log_every == 0 or it == end:
                        ips = (it - n0) * cfg.batch_size / max(time.perf_counter() - t0, 1e-9)
                        self.log.stats({"iteration": it, **{k: round(v, 6) for k, v in last.items()},
                                        "images_per_s": round(ips, 3), "time": time.time()})
                        t0, n0 = time.perf_counter(), it
                    stop = self.stop.requested()
                    if it % cfg.checkpoint_every == 0 or it == end or stop:
                        self.save()
                    if self.is_main and (it % image_every == 0 or it == end):
                        self._log_images()
                    if stop:
                        stopped = "signal"
                        self.log.say(f"stopped at iteration {it}; checkpoint {self.checkpoint_path}")
                        break
        finally:
            self.log.close()
        return {"iteration": self.iteration, "stopped": stopped, **last}


class _Batches:
    """This rank's batches, on the device, up to iteration ``end``; the loader starts only when
    there is work.  On the way out, even on an exception, its workers are released from ignoring
    SIGTERM and shut down, before the signal handlers go back."""

    def __init__(self, trainer: Trainer, end: int) -> None:
        self.trainer, self.end = trainer, end
        self.loader = self.release = self.iterator = None

    def __enter__(self):
        if self.trainer.iteration < self.end:
            self.loader, self.release = self.trainer.make_loader(self.trainer.iteration)
            self.iterator = iter(self.loader)
        return self

    def __iter__(self):
        while self.iterator is not None and self.trainer.iteration < self.end:
            yield self.trainer._to_device(next(self.iterator))

    def __exit__(self, *exc) -> None:
        if self.release is not None:
            self.release.set()
        shutdown = getattr(self.iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self.iterator = self.loader = None
