"""The training loop: what a run updates (:func:`build_parts`) and :class:`Trainer`, which runs
:func:`~xinggan.training.step.train_step` until the schedule ends, saving and logging on the way.

The host never waits for the device inside an iteration: it reads the losses, the health flag
and the ranks' agreement only at sync points (``train.log_every``, checkpoints, image grids, the
end).  Checkpoints are copied to host memory there and written by a background thread.
"""
from __future__ import annotations

import functools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, default_collate

from xinggan.checkpoint import atomic_save, load_checkpoint, remove_stale_temporaries
from xinggan.config import Config, ConfigError
from xinggan.data import IterationSampler, PairDataset, model_inputs
from xinggan.losses import build_image_pools, build_losses
from xinggan.models import build_discriminators, build_generator
from xinggan.ops import attention
from xinggan.precision import PrecisionError, autocast, resolve_amp
from xinggan.runtime import pick_device
from xinggan.training import distributed
from xinggan.training.runlog import RunLog
from xinggan.training.signals import Agreement, StopGuard
from xinggan.training.state import (CheckpointWriter, host_copy, init_loader_worker, loader_seed,
                                    part_name, rank_state, read_rank_part, restore_training_state,
                                    seed_process, training_state)
from xinggan.training.step import GANParts, TrainingError, lr_factor, plain, train_step
from xinggan.visualize import pair_grid

__all__ = ["Trainer", "build_parts", "probe_attention"]

PART_WAIT_S = 600.0  # how long rank 0 waits for the other ranks' parts of a checkpoint
FAILURE_WAIT_S = 20.0  # how long a failing run waits for a save in flight to complete


# -- what a run updates -------------------------------------------------------------------------


def ranks_recipe(cfg: Config, world_size: int, device: torch.device) -> tuple[bool, int, list[str]]:
    """(SyncBatchNorm or not, image-pool size per rank, lines saying how ``world_size`` processes
    train the one-GPU recipe).  The release normalised BatchNorm over the whole batch on one GPU
    and kept one pool of ``loss.pool_size`` per discriminator."""
    batch, pool = cfg.train.batch_size, cfg.loss.pool_size
    if batch % world_size:
        raise ConfigError(f"train.batch_size: the global batch {batch} is not divisible by the "
                          f"{world_size} processes")
    if world_size == 1:
        return False, pool, []
    per_gpu, lines = batch // world_size, []
    sync = cfg.model.norm == "batch" and (cfg.train.sync_batchnorm == "on" or (
        cfg.train.sync_batchnorm == "auto" and per_gpu < batch))
    if sync and device.type != "cuda":
        sync = False
        lines.append("SyncBatchNorm runs on CUDA only: BatchNorm over each rank's images")
    norm = ("instance norm (per image)" if cfg.model.norm != "batch" else
            f"BatchNorm over {batch if sync else per_gpu} images"
            + (" (SyncBatchNorm)" if sync else " per rank") + f", the release over {batch}")
    per_rank = pool // world_size
    lines.insert(0, f"{world_size} processes: {per_gpu} images per process (global batch {batch}); "
                    f"{norm}; image pools of {per_rank} per rank ({per_rank * world_size} in all, "
                    f"the release {pool})")
    return sync, per_rank, lines


def _amp_dtype(cfg: Config, device: torch.device, notice: Callable[[str], None]):
    try:  # bf16 autocast also runs on CPU; fp16 needs CUDA (its grad scaler)
        dtype, line = resolve_amp(cfg.train.amp, device)
    except PrecisionError as error:
        raise ConfigError(f"train.amp: {error}") from None
    if cfg.train.amp == "auto" or "emulated" in line:
        notice(f"train.amp={cfg.train.amp}: {line}")
    return dtype


def build_parts(cfg: Config, device: torch.device, rank: int = 0, world_size: int = 1,
                notice: Callable[[str], None] = print) -> GANParts:
    """Networks (the same initial weights on every rank), fused Adam optimisers, losses, pools and
    scaler of ``rank`` of ``world_size`` on ``device``; ``notice`` hears what runs otherwise."""
    sync_bn, pool_size, lines = ranks_recipe(cfg, world_size, device)
    for line in lines:
        notice(line)
    amp_dtype = _amp_dtype(cfg, device, notice)
    torch.manual_seed(cfg.train.seed)
    nets = (build_generator(cfg), *build_discriminators(cfg))  # generator, shape D, appearance D
    if sync_bn:
        nets = tuple(nn.SyncBatchNorm.convert_sync_batchnorm(m) for m in nets)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    nets = [m.to(device, memory_format=memory_format) for m in nets]
    o = cfg.optim
    opts = [torch.optim.Adam(m.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                             weight_decay=o.weight_decay, fused=True) for m in nets]
    losses = build_losses(cfg).to(device)
    pools = build_image_pools(cfg, size=pool_size)  # shape D, appearance D
    seed_process(cfg.train.seed, rank)  # per-rank streams for everything random from here on
    if cfg.train.compile:
        for module in (*nets, losses):
            module.compile(mode=None if cfg.train.compile_mode == "default" else cfg.train.compile_mode)
    if world_size > 1:  # static_graph: DDP finds the parameters an ablation leaves unused
        nets = [distributed.wrap(nets[0], device, static_graph=True),
                *(distributed.wrap(m, device) for m in nets[1:])]
    return GANParts(
        generator=nets[0], shape_d=nets[1], appearance_d=nets[2], opt_g=opts[0],
        opt_shape_d=opts[1], opt_appearance_d=opts[2], losses=losses, shape_pool=pools[0],
        appearance_pool=pools[1], scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16),
        loss_cfg=cfg.loss, autocast=lambda: autocast(device, amp_dtype), amp_dtype=amp_dtype,
        memory_format=memory_format)


def probe_attention(parts: GANParts, batch: dict, notice: Callable[[str], None]) -> None:
    """Before the first compiled step on CUDA: one eager forward and backward of the generator,
    so that ``attention_impl: auto`` knows which fused kernel takes each shape (the compiled
    graph reuses the answers).  RNG states and BatchNorm statistics are put back."""
    generator = plain(parts.generator)
    device = next(generator.parameters()).device
    buffers = {k: v.clone() for k, v in generator.named_buffers()}
    with torch.random.fork_rng(devices=[device]), parts.autocast():  # forward(): not compiled
        out = generator.forward(batch["source_image"], batch["source_pose"], batch["target_pose"])
        out.float().mean().backward()
    generator.zero_grad(set_to_none=True)
    with torch.no_grad():
        for k, v in generator.named_buffers():
            v.copy_(buffers[k])
    for key, kernels in attention.SDPA_KERNELS.items():
        if not attention.auto_sdpa_backends(kernels):
            notice(f"attention_impl auto: no fused SDPA kernel for q {key[2]}, v {key[4]} "
                   f"({key[1]}); that attention runs 'chunked'")


# -- the run ----------------------------------------------------------------------------------


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
        self.end = cfg.train.iterations
        self.writer = CheckpointWriter()
        self._saved_iteration: Optional[int] = None  # of the last checkpoint known to be written
        self._pending_iteration: Optional[int] = None  # of the save in the background
        self._status_lock = threading.Lock()
        self._probe_pending = bool(cfg.train.compile) and self.device.type == "cuda"
        self._grid_batch: Optional[dict] = None

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "latest.pt"

    def current_lr(self, iteration: Optional[int] = None) -> float:
        o = self.cfg.optim
        it = self.iteration if iteration is None else iteration
        return o.lr * lr_factor(it, o.lr_constant_iterations, o.lr_decay_iterations,
                                o.lr_step_iterations)

    def step(self, batch: dict) -> dict:
        """One iteration on a batch already on the device, at the scheduled learning rate."""
        lr = self.current_lr()
        result = train_step(self.parts, batch, lr, self.iteration + 1)
        self.iteration += 1
        return {**result, "lr": lr}

    # -- agreement between ranks ------------------------------------------------------------
    def _agree(self, failure: Optional[str], source: int = -1) -> None:
        """Raise the same error on every rank when any rank (or ``source`` only) has one."""
        if self.world_size == 1 or not dist.is_initialized():
            if failure:
                raise TrainingError(failure, agreed=True)
            return
        mine = failure if source in (-1, self.rank) else None
        on = self.device if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([1.0 if mine else 0.0], device=on)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            messages = [None] * self.world_size
            dist.all_gather_object(messages, mine)
            raise TrainingError("; ".join(f"rank {r}: {m}" for r, m in enumerate(messages) if m),
                                agreed=True)

    def sync_point(self) -> None:
        """Read the health flag and the background save's result on the host; every rank raises
        the same error when any step was skipped or any save failed."""
        self.parts.health.check()
        failed = self.writer.failed()
        self._agree(f"checkpoint save failed: {failed}" if failed else None)

    # -- checkpoints ------------------------------------------------------------------------
    def settle(self) -> None:
        """Wait for the background save; every rank raises when one failed.  The other ranks'
        parts come first: rank 0 renames ``latest.pt`` only once they are written."""
        if self.is_main:
            self._agree(None)  # the other ranks report their parts
            self._agree(self._fail_line(self.writer.wait()), source=0)
        else:
            self._agree(self._fail_line(self.writer.wait()))
            self._agree(None, source=0)
        if self._pending_iteration is not None:
            self._saved_iteration, self._pending_iteration = self._pending_iteration, None

    def _fail_line(self, error: Optional[str]) -> Optional[str]:
        if not error:
            return None
        kept = (f"the checkpoint of iteration {self._saved_iteration} is kept"
                if self._saved_iteration is not None else "no checkpoint was written before")
        return f"checkpoint save failed: {error}; {kept}"

    def save(self) -> None:
        """Copy this rank's state to host memory and write it in the background (a collective:
        every rank calls it at the same iteration)."""
        start = time.perf_counter()
        self.settle()
        t0 = time.perf_counter()
        it, folder = self.iteration, self.checkpoint_path.parent
        own = rank_state(self.parts, self.device)
        if self.world_size == 1:  # one process: its part inside latest.pt
            per_rank, own_part = [own], None
        else:
            per_rank = [part_name(r, it) for r in range(self.world_size)]
            own_part = {"rank": self.rank, "iteration": it, "world_size": self.world_size,
                        "state": host_copy(own)}
        state = (host_copy(training_state(self.cfg, self.parts, it, per_rank, self.world_size))
                 if self.is_main else None)
        copy_s = time.perf_counter() - t0
        self._pending_iteration = it
        timing = {"loop_blocked_s": time.perf_counter() - start, "host_copy_s": copy_s}
        self.writer.submit(functools.partial(self._write, state, own_part, it, folder, timing))

    def _write(self, state, own_part, it: int, folder: Path, timing: dict) -> None:
        """In the writer thread: this rank's part, then (rank 0) ``latest.pt`` once every part of
        ``it`` is there, then the parts of older saves and the run's status."""
        t0 = time.perf_counter()
        if own_part is not None:
            atomic_save(own_part, folder / part_name(self.rank, it))
        if not self.is_main:
            return
        deadline = time.monotonic() + PART_WAIT_S
        for r in range(1, self.world_size):
            while not (folder / part_name(r, it)).is_file():
                if self.writer.cancel.is_set():
                    raise TrainingError("cancelled: the run stopped before every part was written")
                if time.monotonic() > deadline:
                    raise TrainingError(f"rank {r}'s part {folder / part_name(r, it)} did not "
                                        f"appear within {PART_WAIT_S:.0f} s: every process needs "
                                        "the run folder (a shared file system)")
                time.sleep(0.02)
        atomic_save({"format": "xinggan", "version": 1, **state}, self.checkpoint_path)
        keep = {part_name(r, it) for r in range(self.world_size)}
        for path in folder.glob("rank*-*.pt"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
        self.write_status("running", iteration=it)
        timing = {"iteration": it, **timing, "write_s": time.perf_counter() - t0}
        with open(self.run_dir / "saves.jsonl", "a") as handle:  # how long saving took
            handle.write(json.dumps({k: round(v, 4) for k, v in timing.items()}) + "\n")

    def write_status(self, state: str, iteration: Optional[int] = None, error: str = "") -> None:
        """``<run>/status.json`` (rank 0): the state, the last saved iteration, the end."""
        if not self.is_main:
            return
        if iteration is None:
            iteration = self._saved_iteration or 0
        status = {"state": state, "iteration": iteration, "iterations": self.end,
                  "time": time.time(), **({"error": error} if error else {})}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self._status_lock:
            tmp = self.run_dir / ".status.json.tmp"
            tmp.write_text(json.dumps(status))
            os.replace(tmp, self.run_dir / "status.json")

    def resume(self) -> bool:
        """Continue from ``latest.pt`` when there is one.  Rank 0, which writes it, decides for
        every rank; a rank that cannot read the checkpoint or its part stops every rank."""
        found = self.checkpoint_path.is_file()
        if self.world_size > 1 and dist.is_initialized():
            seen = [None] * self.world_size
            dist.all_gather_object(seen, found)
            blind = [r for r, ok in enumerate(seen) if not ok]
            if seen[0] and blind:
                raise TrainingError(
                    f"rank 0 resumes from {self.checkpoint_path}, which rank(s) "
                    f"{', '.join(map(str, blind))} cannot read: every process needs the run "
                    "folder (a shared file system)", agreed=True)
            found = seen[0]
        if not found:
            return False
        error = None
        try:
            state = load_checkpoint(self.checkpoint_path, map_location="cpu")
            ranks = list(state.get("ranks") or [])
            if self.rank < len(ranks) and isinstance(ranks[self.rank], str):
                ranks[self.rank] = read_rank_part(self.checkpoint_path.parent, ranks[self.rank],
                                                  self.rank, int(state["iteration"]))
                state["ranks"] = ranks
            self.iteration = restore_training_state(
                self.parts, state, self.cfg, rank=self.rank, world_size=self.world_size,
                device=self.device, allow_world_size_change=self.allow_world_size_change,
                source=str(self.checkpoint_path), notice=self.log.notice)
        except Exception as exc:  # noqa: BLE001 - agreed below, raised on every rank
            error = str(exc)
        self._agree(error)
        self._saved_iteration = self.iteration
        return True

    # -- data -----------------------------------------------------------------------------------
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
        """Images normalised and heatmaps drawn on the device (the loader sends uint8 pixels
        and keypoints)."""
        return model_inputs(batch, self.device, self.cfg.data.heatmap_sigma,
                            self.parts.memory_format)

    # -- image grids -------------------------------------------------------------------------
    def _log_images(self) -> None:
        """A grid of the first ``train.grid_pairs`` test pairs (train pairs without a test
        split).  Rank 0 only, so a failure here becomes a notice: it must not stop one rank."""
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
            self._grid_batch = default_collate(
                [data[i] for i in range(min(self.cfg.train.grid_pairs, len(data)))])
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
        if self.is_main:
            remove_stale_temporaries(self.checkpoint_path.parent)
        if resume and self.resume() and self.is_main:
            print(f"resumed from {self.checkpoint_path} at iteration {self.iteration}")
        self.end = cfg.iterations if max_iterations is None else min(cfg.iterations, max_iterations)
        self.write_status("running")
        image_every = cfg.image_every or cfg.checkpoint_every
        last, stopped, agreement = {}, "done", Agreement(self.device, self.world_size)
        stop_guard = StopGuard(verbose=self.is_main)
        for net in (self.generator, self.shape_d, self.appearance_d):
            net.train()
        try:
            with stop_guard, _Batches(self, self.end) as batches:
                self.log.open_progress(self.end, self.iteration)
                t0, n0, saved_at = time.perf_counter(), self.iteration, time.monotonic()
                for batch in batches:
                    if self._probe_pending:
                        self._probe_pending = False
                        probe_attention(self.parts, batch, self.log.notice)
                    last = self.step(batch)
                    it = self.iteration
                    self.log.step()
                    due = bool(cfg.checkpoint_minutes) and self.is_main and (
                        time.monotonic() - saved_at > 60 * cfg.checkpoint_minutes)
                    stop, timed = agreement.exchange(stop_guard.signal is not None, due)
                    save = it % cfg.checkpoint_every == 0 or it == self.end or stop or timed
                    log = it % cfg.log_every == 0 or it == self.end
                    image = self.is_main and (it % image_every == 0 or it == self.end)
                    if save or log:
                        self.sync_point()
                    if log:
                        ips = (it - n0) * cfg.batch_size / max(time.perf_counter() - t0, 1e-9)
                        self.log.stats({"iteration": it, **{k: round(float(v), 6) for k, v in last.items()},
                                        "images_per_s": round(ips, 3), "time": time.time()})
                        t0, n0 = time.perf_counter(), it
                    if save:
                        self.save()
                        saved_at = time.monotonic()
                    if image:
                        self._log_images()
                    if stop:
                        stopped = "signal"
                        break
            agreement.close()
            self.settle()
            if stopped == "signal":
                self.log.say(f"stopped at iteration {self.iteration}; checkpoint {self.checkpoint_path}")
            self.write_status("stopped" if stopped == "signal" else "done")
        except BaseException as error:
            if getattr(error, "agreed", False):  # every rank is here: their parts get written
                agreement.close()
            self.writer.wait(timeout=FAILURE_WAIT_S)  # the last save completes if it can
            self.write_status("failed", error=str(error) or type(error).__name__)
            raise
        finally:
            self.log.close()
        return {"iteration": self.iteration, "stopped": stopped,
                **{k: float(v) for k, v in last.items()}}

    def close(self) -> None:
        """Wait for the background save and release the DDP wrappers (before the process group
        is destroyed)."""
        self.writer.wait(timeout=FAILURE_WAIT_S)
        distributed.release_wrappers()


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
