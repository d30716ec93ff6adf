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

__all__ = ["GANParts", "TrainingError", "LOSS_NAMES", "lr_factor", "plain", "train_step"]

LOSS_NAMES = ("g_total", "g_l1", "g_perceptual", "g_gan", "d_appearance", "d_shape")


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint...)."""


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


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _all_ranks(terms: Tensor) -> list[list[float]]:
    """``terms`` of every process, in rank order (a collective when several processes run)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [terms.tolist()]
    out = [torch.empty_like(terms) for _ in range(dist.get_world_size())]
    dist.all_gather(out, terms)
    return torch.stack(out).tolist()


def train_step(parts: GANParts, batch: dict, lr: float, iteration: int) -> dict[str, float]:
    """One iteration on a batch already on the device; returns the loss terms as floats.

    ``iteration`` (1-based, the one being run) only labels a non-finite-loss error.
    """
    cfg = parts.loss_cfg
    for opt in (parts.opt_g, parts.opt_shape_d, parts.opt_appearance_d):
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
    # Every rank sees every rank's terms, so that a non-finite loss on any one of them stops all
    # of them here, before any optimiser step (the gradients were already all-reduced), instead
    # of one rank raising while the others step with NaN weights and wait in the next collective.
    per_rank = _all_ranks(terms)
    result = dict(zip(LOSS_NAMES, per_rank[_rank()]))
    bad = [(r, values) for r, values in enumerate(per_rank)
           if not all(math.isfinite(v) for v in values)]
    if bad:
        where = "; ".join(
            (f"rank {r}: " if len(per_rank) > 1 else "")
            + ", ".join(f"{n}={v}" for n, v in zip(LOSS_NAMES, values)) for r, values in bad)
        raise TrainingError(
            f"non-finite loss at iteration {iteration}: {where} (networks not updated on any "
            "rank; the last good checkpoint is kept)")
    # The generator's weights are stepped only now, after the discriminator steps, although its
    # gradients were ready after step 1: the discriminator steps read the detached image of
    # step 1 and never the generator's weights, so the order gives the released update exactly,
    # and a non-finite loss found above leaves all three networks untouched.
    parts.scaler.step(parts.opt_g)
    parts.scaler.step(parts.opt_appearance_d)
    parts.scaler.step(parts.opt_shape_d)
    parts.scaler.update()
    return result

