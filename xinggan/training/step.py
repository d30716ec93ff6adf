"""One XingGAN training iteration, as in the paper and the released code, read top to bottom.

Per iteration (paper Sec. 3.4; the released ``train.py`` of Ha0Tang/XingGAN):

1. **generator step**: L1 to the target image, perceptual loss (VGG-19 relu1_2 features) and the
   mean of the two adversarial terms: the shape discriminator sees (generated, target pose), the
   appearance discriminator sees (generated, source image).  The discriminators stay in train
   mode (dropout on) but their weights get no gradient in this step;
2. **appearance discriminator step** on (target, source) as real and (generated, source), drawn
   through its history pool, as fake;
3. **shape discriminator step** on (target, target pose) as real and (generated, target pose),
   drawn through its pool, as fake.

Each discriminator loss is ``0.5 * lambda_gan * (real term + fake term)``.  The learning rate is
a pure function of the iteration (:func:`lr_factor`).  Everything around this step (devices,
DDP and compile wrapping, logging, checkpoints, signals) lives in :mod:`xinggan.training.loop`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

from xinggan.losses import ImagePool

__all__ = ["GANParts", "Health", "TrainingError", "LOSS_NAMES", "lr_factor", "plain", "train_step"]

LOSS_NAMES = ("g_total", "g_l1", "g_perceptual", "g_gan", "d_appearance", "d_shape")


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint...).  ``agreed``: every
    rank raises the same error at the same point (nothing for one rank to tell the others)."""

    def __init__(self, message: str, agreed: bool = False) -> None:
        super().__init__(message)
        self.agreed = agreed


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


@dataclass
class GANParts:
    """What one iteration touches: the networks as trained (possibly DDP / compile wrapped),
    their optimisers, the losses of :func:`xinggan.losses.build_losses`, the two pools, the
    grad scaler and the loss weights (``cfg.loss``)."""

    generator: nn.Module
    shape_d: nn.Module
    appearance_d: nn.Module
    opt_g: torch.optim.Optimizer
    opt_shape_d: torch.optim.Optimizer
    opt_appearance_d: torch.optim.Optimizer
    losses: nn.ModuleDict  # "gan", "l1", and "perceptual" when lambda_perceptual > 0
    shape_pool: ImagePool
    appearance_pool: ImagePool
    scaler: torch.amp.GradScaler
    loss_cfg: object
    autocast: Callable[[], ContextManager] = contextlib.nullcontext
    amp_dtype: Optional[torch.dtype] = None  # what ``autocast`` runs in (None: float32)
    memory_format: torch.memory_format = torch.preserve_format  # of the networks and batches
    health: Optional["Health"] = None  # made on first use when not given

    def __post_init__(self) -> None:
        if self.health is None:
            device = next(plain(self.generator).parameters()).device
            world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
            self.health = Health(device, world)

    def networks(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(generator, shape D, appearance D) outside any DDP / compile wrapper."""
        return plain(self.generator), plain(self.shape_d), plain(self.appearance_d)

    def optimizers(self) -> tuple[torch.optim.Optimizer, ...]:
        return self.opt_g, self.opt_shape_d, self.opt_appearance_d


def plain(module: nn.Module) -> nn.Module:
    """The module inside a DDP and/or ``torch.compile`` wrapper."""
    module = getattr(module, "_orig_mod", module)
    module = getattr(module, "module", module)
    return getattr(module, "_orig_mod", module)


def _requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def discriminator_step(d: nn.Module, opt: torch.optim.Optimizer, pool: ImagePool, real: Tensor,
                       fake: Tensor, parts: GANParts) -> Tensor:
    """Backward of ``0.5 * lambda_gan * (GAN(D(real), real) + GAN(D(pool(fake)), fake))``."""
    fake = pool.query(fake)  # history pool (pix2pix / PATN); returns detached samples
    with parts.autocast():
        loss_real = parts.losses["gan"](d(real), True)
        loss_fake = parts.losses["gan"](d(fake), False)
        loss = 0.5 * parts.loss_cfg.lambda_gan * (loss_real + loss_fake)
    opt.zero_grad(set_to_none=True)
    parts.scaler.scale(loss).backward()
    return loss


def _skip_or_step(opt: torch.optim.Optimizer, skip: Tensor, scaler: torch.amp.GradScaler) -> None:
    """``opt.step()`` unless ``skip`` (a 0/1 device tensor) is 1, decided on the device."""
    if scaler.is_enabled():  # fp16: a skipped step's gradients become non-finite, which the
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        torch._foreach_div_(grads, 1.0 - skip)  # scaler skips (dividing by 1 is exact)
        scaler.step(opt)
    elif opt.defaults.get("fused"):
        opt.found_inf = skip  # fused Adam skips the update (step count included) on the device
        try:
            opt.step()
        finally:
            del opt.found_inf
    elif not skip.item():  # an optimiser that cannot skip on the device: ask the host
        opt.step()


def train_step(parts: GANParts, batch: dict, lr: float, iteration: int) -> dict[str, Tensor]:
    """One iteration on a batch already on the device; returns the loss terms as 0-dim tensors
    (read them only when needed: reading waits for the device).

    A non-finite loss term on any rank skips the three optimiser steps on every rank, from this
    iteration on (``parts.health``); :func:`check_health` turns it into an error on the host.
    """
    cfg = parts.loss_cfg
    for opt in parts.optimizers():
        for group in opt.param_groups:
            group["lr"] = lr
    source, target = batch["source_image"], batch["target_image"]
    source_pose, target_pose = batch["source_pose"], batch["target_pose"]
    shape_d, appearance_d = plain(parts.shape_d), plain(parts.appearance_d)

    # 1. Generator step.  The discriminators judge the generated image, in train mode, but
    #    their weights are frozen here (and called unwrapped: DDP must not sync them now).
    _requires_grad(shape_d, False)
    _requires_grad(appearance_d, False)
    with parts.autocast():
        fake = parts.generator(source, source_pose, target_pose)
        fake_shape_pair = torch.cat([fake, target_pose], 1)        # for the shape D
        fake_appearance_pair = torch.cat([fake, source], 1)        # for the appearance D
        gan_shape = parts.losses["gan"](shape_d(fake_shape_pair), True)
        gan_appearance = parts.losses["gan"](appearance_d(fake_appearance_pair), True)
        loss_gan = cfg.lambda_gan * (gan_shape + gan_appearance) / 2
        loss_l1 = cfg.lambda_l1 * parts.losses["l1"](fake.float(), target.float())
        loss_perceptual = torch.zeros((), device=fake.device)
        if "perceptual" in parts.losses:
            loss_perceptual = cfg.lambda_perceptual * parts.losses["perceptual"](fake, target)
        loss_g = loss_gan + loss_l1 + loss_perceptual
    parts.opt_g.zero_grad(set_to_none=True)
    parts.scaler.scale(loss_g).backward()
    _requires_grad(shape_d, True)
    _requires_grad(appearance_d, True)

    # 2. Appearance discriminator step, 3. shape discriminator step, on the generated image of
    #    step 1 (detached), as the released code does.
    loss_appearance_d = discriminator_step(
        parts.appearance_d, parts.opt_appearance_d, parts.appearance_pool,
        torch.cat([target, source], 1), fake_appearance_pair.detach(), parts)
    loss_shape_d = discriminator_step(
        parts.shape_d, parts.opt_shape_d, parts.shape_pool,
        torch.cat([target, target_pose], 1), fake_shape_pair.detach(), parts)

    terms = torch.stack([t.detach().float() for t in (loss_g, loss_l1, loss_perceptual, loss_gan,
                                                      loss_appearance_d, loss_shape_d)])
    # The generator's weights are stepped only now, after the discriminator steps, although its
    # gradients were ready after step 1: the discriminator steps read the detached image of
    # step 1 and never the generator's weights, so the order gives the released update exactly,
    # and a non-finite loss leaves all three networks untouched.
    skip = parts.health.update(terms, iteration)
    for opt in (parts.opt_g, parts.opt_appearance_d, parts.opt_shape_d):
        _skip_or_step(opt, skip, parts.scaler)
    parts.scaler.update()
    return dict(zip(LOSS_NAMES, terms.unbind()))


class Health:
    """Whether a loss term has been non-finite on any rank, kept on the device.

    :meth:`update` returns the 0/1 skip flag of the iteration (sticky: once set, every later
    step is skipped too) and keeps this rank's terms of the first bad iteration; :meth:`check`
    reads it on the host and raises the error that names the iteration, the ranks and terms.
    """

    def __init__(self, device: torch.device, world_size: int = 1) -> None:
        self.world_size = world_size
        self.halted = torch.zeros((), device=device)
        self.first = torch.zeros(1 + len(LOSS_NAMES), dtype=torch.float64, device=device)

    def update(self, terms: Tensor, iteration: int) -> Tensor:
        bad = (~torch.isfinite(terms).all()).float()
        if self.world_size > 1:  # every rank skips the same steps (their weights stay equal)
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        new = (bad > self.halted).reshape(1)
        record = torch.cat([torch.full((1,), iteration, dtype=torch.float64, device=terms.device),
                            terms.double()])
        self.first.copy_(torch.where(new, record, self.first))
        self.halted.copy_(torch.maximum(self.halted, bad))
        return self.halted

    def check(self) -> None:
        """Raise :class:`TrainingError` on every rank when a step was skipped (host read)."""
        if not self.halted.item():
            return
        records = self.first[None]
        if self.world_size > 1:
            gathered = [torch.empty_like(self.first) for _ in range(self.world_size)]
            dist.all_gather(gathered, self.first)
            records = torch.stack(gathered)
        rows = records.tolist()
        iteration = int(rows[0][0])
        where = "; ".join(
            (f"rank {r}: " if len(rows) > 1 else "")
            + ", ".join(f"{n}={v}" for n, v in zip(LOSS_NAMES, values[1:]))
            for r, values in enumerate(rows) if not all(math.isfinite(v) for v in values[1:]))
        raise TrainingError(
            f"non-finite loss at iteration {iteration}: {where} (networks not updated on any "
            "rank since; the last good checkpoint is kept)", agreed=True)
