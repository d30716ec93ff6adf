"""The XingGAN training loop: one visible class, no framework.

Per iteration, as in the released code (``XINGGAN.md``, Optimisation):

1. generator step: L1 + perceptual + the mean of the two adversarial terms; the
   discriminators stay in train mode (dropout on) but receive no update;
2. appearance discriminator step on (target, source) vs (generated, source) from its pool;
3. shape discriminator step on (target, target pose) vs (generated, target pose) from its pool.

The learning rate is a pure function of the iteration (:func:`lr_factor`).  A checkpoint holds
everything needed to continue bit-exactly: networks, optimisers, iteration, pools, RNG states,
grad scaler and the resolved config; the sampler position is the iteration itself.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import signal
import sys
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


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint...)."""


# --------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------


def lr_factor(iteration: int, constant: int, decay: int, step: int = 1) -> float:
    """Learning-rate multiplier at 0-based ``iteration``.

    The released code steps the rate once per official epoch t (1-based):
    ``1 - max(0, t + 1 - n_const) / (n_decay + 1)``, with n_const and n_decay counted in epochs.
    Here epochs are ``step`` iterations long (125 for the released recipe); ``step=1`` gives a
    per-iteration linear decay.  It reaches 0 in the last step.
    """
    epoch = iteration // step + 1
    n_const = constant // step
    n_decay = decay // step
    return 1.0 - max(0, epoch + 1 - n_const) / float(n_decay + 1)


# --------------------------------------------------------------------------------------
# Distributed helpers
# --------------------------------------------------------------------------------------


def distributed_context() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (1 process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, local, world


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


def _unwrap(module: nn.Module) -> nn.Module:
    module = getattr(module, "module", module)  # DistributedDataParallel
    return getattr(module, "_orig_mod", module)  # torch.compile


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


# --------------------------------------------------------------------------------------
# RNG state (kept as tensors and plain values so checkpoints load with weights_only=True)
# --------------------------------------------------------------------------------------


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_to_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _to_tuple(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_to_tuple(v) for v in value)
    return value


# --------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------


class Trainer:
    """Builds networks, losses, optimisers and data from a config and runs the loop."""

    def __init__(self, cfg: Config, run_dir: str | Path, *, device: Optional[torch.device] = None,
                 rank: int = 0, world_size: int = 1, progress: bool = True,
                 tensorboard: bool = True, dataset: Any = None) -> None:
        from xinggan.losses import GANLoss, ImagePool, PerceptualLoss
        from xinggan.models import build_discriminators, build_generator

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.device = device or pick_device(cfg.train.device)
        self.progress = progress and self.is_main
        self.use_tensorboard = tensorboard and self.is_main
        if cfg.train.batch_size % world_size:
            raise ConfigError(
                f"train.batch_size: the global batch {cfg.train.batch_size} is not divisible by "
                f"the {world_size} processes"
            )
        self.local_batch = cfg.train.batch_size // world_size
        amp = cfg.train.amp
        if amp == "fp16" and self.device.type != "cuda":  # bf16 autocast also runs on CPU
            raise ConfigError(f"train.amp: fp16 needs a CUDA device (running on {self.device})")
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]

        # Identical initial weights on every rank (DDP would broadcast them anyway).
        torch.manual_seed(cfg.train.seed)
        generator = build_generator(cfg)
        shape_d, appearance_d = build_discriminators(cfg)
        if cfg.train.sync_batchnorm and world_size > 1:
            generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            shape_d = nn.SyncBatchNorm.convert_sync_batchnorm(shape_d)
            appearance_d = nn.SyncBatchNorm.convert_sync_batchnorm(appearance_d)
        memory_format = torch.channels_last if cfg.train.channels_last else torch.preserve_format
        self.memory_format = memory_format
        self.generator = generator.to(self.device, memory_format=memory_format)
        self.shape_d = shape_d.to(self.device, memory_format=memory_format)
        self.appearance_d = appearance_d.to(self.device, memory_format=memory_format)

        self.opt_g = self._adam(self.generator)
        self.opt_shape_d = self._adam(self.shape_d)
        self.opt_appearance_d = self._adam(self.appearance_d)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")

        self.gan_loss = GANLoss(cfg.loss.gan_mode).to(self.device)
        self.perceptual = None
        if cfg.loss.lambda_perceptual > 0:
            self.perceptual = PerceptualLoss(cfg.loss.vgg_weights).to(self.device)
        self.shape_pool = ImagePool(cfg.loss.pool_size)
        self.appearance_pool = ImagePool(cfg.loss.pool_size)

        # Per-rank seeding of everything random after initialisation (dropout, pools).
        torch.manual_seed(cfg.train.seed + 1000 * (rank + 1))
        random.seed(cfg.train.seed + rank)
        np.random.seed(cfg.train.seed + rank)

        # Networks used by the steps (wrapped for DDP / compile); the plain ones are saved.
        self.g_train: nn.Module = self.generator
        self.shape_d_train: nn.Module = self.shape_d
        self.appearance_d_train: nn.Module = self.appearance_d
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            g = cfg.model.generator
            # ablations that leave parameters out of the graph (e.g. the last block's shape
            # update when no fusion head reads the shape code) need DDP's unused-parameter scan
            unused = not (g.fusion and g.appearance_update and g.shape_update)
            self.g_train = DDP(self.generator, device_ids=ids, find_unused_parameters=unused)
            self.shape_d_train = DDP(self.shape_d, device_ids=ids)
            self.appearance_d_train = DDP(self.appearance_d, device_ids=ids)
        if cfg.train.compile:
            self.g_train = torch.compile(self.g_train)

        self.dataset = dataset
        self.iteration = 0
        self._stop_signal: Optional[int] = None
        self._writer = None
        self._grid_batch = None

    # -- building blocks ------------------------------------------------------------
    def _adam(self, module: nn.Module) -> torch.optim.Optimizer:
        o = self.cfg.optim
        return torch.optim.Adam(module.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                                weight_decay=o.weight_decay)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

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

    # -- one iteration ---------------------------------------------------------------
    def train_step(self, batch: dict) -> dict[str, float]:
        """One released-recipe iteration on a batch; returns the loss terms as floats."""
        cfg = self.cfg.loss
        lr = self.current_lr()
        for opt in (self.opt_g, self.opt_shape_d, self.opt_appearance_d):
            for group in opt.param_groups:
                group["lr"] = lr
        b = self._to_device(batch)
        source, target = b["source_image"], b["target_image"]
        source_pose, target_pose = b["source_pose"], b["target_pose"]

        # 1. generator step (discriminators in train mode, no gradients for their weights)
        _set_requires_grad(self.shape_d, False)
        _set_requires_grad(self.appearance_d, False)
        with self._autocast():
            fake = self.g_train(source, source_pose, target_pose)
            fake_shape_pair = torch.cat([fake, target_pose], 1)
            fake_appearance_pair = torch.cat([fake, source], 1)
            # the plain modules: the discriminators' weights are not trained in this step
            gan_shape = self.gan_loss(_unwrap(self.shape_d_train)(fake_shape_pair), True)
            gan_appearance = self.gan_loss(_unwrap(self.appearance_d_train)(fake_appearance_pair), True)
            loss_gan = cfg.lambda_gan * (gan_shape + gan_appearance) / 2
            loss_l1 = cfg.lambda_l1 * torch.mean(torch.abs(fake.float() - target.float()))
            loss_g = loss_gan + loss_l1
            loss_perceptual = torch.zeros((), device=self.device)
            if self.perceptual is not None:
                loss_perceptual = cfg.lambda_perceptual * self.perceptual(fake, target)
                loss_g = loss_g + loss_perceptual
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        _set_requires_grad(self.shape_d, True)
        _set_requires_grad(self.appearance_d, True)

        fake_shape_pair = fake_shape_pair.detach()
        fake_appearance_pair = fake_appearance_pair.detach()

        # 2. appearance discriminator step, 3. shape discriminator step
        loss_appearance_d = self._d_step(
            self.appearance_d_train, self.opt_appearance_d, self.appearance_pool,
            torch.cat([target, source], 1), fake_appearance_pair)
        loss_shape_d = self._d_step(
            self.shape_d_train, self.opt_shape_d, self.shape_pool,
            torch.cat([target, target_pose], 1), fake_shape_pair)

        # Only now step G: a non-finite loss must leave every network untouched.
        terms = torch.stack([loss_g.detach().float(), loss_l1.detach().float(),
                             loss_perceptual.detach().float(), loss_gan.detach().float(),
                             loss_appearance_d.detach().float(), loss_shape_d.detach().float()])
        values = terms.tolist()
        names = ["g_total", "g_l1", "g_perceptual", "g_gan", "d_appearance", "d_shape"]
        result = dict(zip(names, values))
        bad = [n for n, v in result.items() if not math.isfinite(v)]
        if bad:
            raise TrainingError(
                f"non-finite loss at iteration {self.iteration + 1}: "
                + ", ".join(f"{n}={result[n]}" for n in names)
                + " (networks not updated; the last good checkpoint is kept)"
            )
        self.scaler.step(self.opt_g)
        self.scaler.step(self.opt_appearance_d)
        self.scaler.step(self.opt_shape_d)
        self.scaler.update()
        self.iteration += 1
        result["lr"] = lr
        return result

    def _d_step(self, d: nn.Module, opt: torch.optim.Optimizer, pool: Any,
                real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        fake = pool.query(fake)
        with self._autocast():
            loss_real = self.gan_loss(d(real), True)
            loss_fake = self.gan_loss(d(fake), False)
            loss = 0.5 * self.cfg.loss.lambda_gan * (loss_real + loss_fake)
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        return loss

    # -- state ----------------------------------------------------------------------
    def state_dict(self) -> dict:
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
            "pools": {"shape": self.shape_pool.state_dict(),
                      "appearance": self.appearance_pool.state_dict()},
            "rng": rng_state(),
            "sampler": {"seed": self.cfg.train.seed, "iteration": self.iteration,
                        "world_size": self.world_size},
            "world_size": self.world_size,
            "versions": versions(),
        }

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        saved = config_from_dict(state["config"], source=source)
        self._check_compatible(saved, source)
        self.generator.load_state_dict(state["generator"])
        self.shape_d.load_state_dict(state["shape_discriminator"])
        self.appearance_d.load_state_dict(state["appearance_discriminator"])
        opts = state["optimizers"]
        self.opt_g.load_state_dict(opts["generator"])
        self.opt_shape_d.load_state_dict(opts["shape_discriminator"])
        self.opt_appearance_d.load_state_dict(opts["appearance_discriminator"])
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.shape_pool.load_state_dict(state["pools"]["shape"])
        self.appearance_pool.load_state_dict(state["pools"]["appearance"])
        self.iteration = int(state["iteration"])
        if state.get("world_size", 1) == self.world_size:
            set_rng_state(state["rng"])

    def _check_compatible(self, saved: Config, source: str) -> None:
        """A resumed run must train the same networks on the same data layout."""
        if saved.model != self.cfg.model:
            diffs = _diff(saved.model, self.cfg.model, "model")
            raise TrainingError(
                f"{source}: the checkpoint was trained with a different model config: "
                + "; ".join(diffs[:8])
            )
        if (saved.data.height, saved.data.width) != (self.cfg.data.height, self.cfg.data.width):
            raise TrainingError(
                f"{source}: the checkpoint was trained at {saved.data.height}x{saved.data.width}, "
                f"this config uses {self.cfg.data.height}x{self.cfg.data.width}"
            )

    # -- checkpoints ------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "latest.pt"

    def save(self) -> Optional[Path]:
        if not self.is_main:
            return None
        return save_checkpoint(self.state_dict(), self.checkpoint_path)

    def resume(self) -> bool:
        path = self.checkpoint_path
        if not path.is_file():
            return False
        state = load_checkpoint(path, map_location=self.device)
        self.load_state_dict(state, source=str(path))
        return True

    # -- data -------------------------------------------------------------------------
    def make_loader(self, start_iteration: int) -> DataLoader:
        from xinggan.data import IterationSampler, PairDataset

        if self.dataset is None:
            self.dataset = PairDataset.from_config(self.cfg.data, "train")
        sampler = IterationSampler(len(self.dataset), self.cfg.train.batch_size,
                                   seed=self.cfg.train.seed, rank=self.rank,
                                   world_size=self.world_size)
        sampler.set_iteration(start_iteration)
        workers = self.cfg.data.num_workers
        return DataLoader(
            self.dataset, batch_size=self.local_batch, sampler=sampler, drop_last=True,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            persistent_workers=False, prefetch_factor=2 if workers > 0 else None,
            # its own RNG, so that starting a loader never draws from the global one
            generator=torch.Generator().manual_seed(self.cfg.train.seed),
        )

    # -- logging ----------------------------------------------------------------------
    def _log_stats(self, stats: dict) -> None:
        with open(self.run_dir / "stats.jsonl", "a") as handle:
            handle.write(json.dumps(stats) + "\n")
        if self._writer is not None:
            for key, value in stats.items():
                if key not in ("iteration", "time"):
                    self._writer.add_scalar(key, value, stats["iteration"])

    def _log_images(self) -> None:
        if self._writer is None and not self.is_main:
            return
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
        g = _unwrap(self.generator)
        was_training = g.training
        g.eval()
        with torch.no_grad(), self._autocast():
            fake = g(b["source_image"], b["source_pose"], b["target_pose"]).float()
        g.train(was_training)
        grid = pair_grid(b["source_image"], b["source_pose"], b["target_pose"], fake,
                         b["target_image"])
        from PIL import Image

        out = self.run_dir / "samples"
        out.mkdir(exist_ok=True)
        Image.fromarray(grid).save(out / f"iter_{self.iteration:07d}.png")
        if self._writer is not None:
            self._writer.add_image("samples", grid, self.iteration, dataformats="HWC")

    # -- the loop -----------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if self._stop_signal is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self._stop_signal = signum
        if self.progress:
            print(f"\nsignal {signum}: finishing the iteration, saving, exiting", file=sys.stderr)

    def fit(self, resume: bool = False, max_iterations: Optional[int] = None) -> dict:
        """Train to ``train.iterations`` (or ``max_iterations``), saving as configured."""
        cfg = self.cfg.train
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
            (self.run_dir / "versions.json").write_text(json.dumps(versions(), indent=1))
            if self.use_tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        if resume and self.resume() and self.is_main:
            print(f"resumed from {self.checkpoint_path} at iteration {self.iteration}")
        end = cfg.iterations if max_iterations is None else min(cfg.iterations, max_iterations)
        handlers = {}
        if threading_main():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
        self.generator.train()
        self.shape_d.train()
        self.appearance_d.train()
        last: dict = {}
        try:
            if self.iteration >= end:
                return {"iteration": self.iteration, "stopped": "done"}
            loader = self.make_loader(self.iteration)
            bar = None
            if self.progress:
                from tqdm import tqdm

                bar = tqdm(total=end, initial=self.iteration, dynamic_ncols=True, unit="it")
            t0, n0 = time.perf_counter(), self.iteration
            for batch in loader:
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
                    if self.is_main:
                        print(f"stopped at iteration {it}; checkpoint {self.checkpoint_path}")
                    return {"iteration": it, "stopped": "signal", **last}
                if it >= end:
                    break
            if bar is not None:
                bar.close()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if self._writer is not None:
                self._writer.flush()
        return {"iteration": self.iteration, "stopped": "done", **last}

    def _stop_requested(self) -> bool:
        flag = self._stop_signal is not None
        if self.world_size > 1 and dist.is_initialized():
            t = torch.tensor([1.0 if flag else 0.0], device=self.device if
                             dist.get_backend() == "nccl" else "cpu")
            dist.all_reduce(t)
            flag = bool(t.item() > 0)
        return flag


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _diff(a: Any, b: Any, prefix: str) -> list[str]:
    import dataclasses

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
