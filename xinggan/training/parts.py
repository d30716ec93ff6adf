"""What a training run updates, built from a config, a device and a rank.

:func:`build_parts` makes the generator and the two discriminators (the same initial weights on
every rank), their Adam optimisers, the losses of :func:`xinggan.losses.build_losses`, the two
image pools and the grad scaler, then wraps the networks for DistributedDataParallel and
``torch.compile`` where asked.  The result is the :class:`~xinggan.training.step.GANParts` that
one iteration (:func:`~xinggan.training.step.train_step`) touches.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from xinggan.config import Config, ConfigError
from xinggan.losses import build_image_pools, build_losses
from xinggan.models import build_discriminators, build_generator
from xinggan.ops import attention
from xinggan.precision import PrecisionError, autocast, resolve_amp
from xinggan.training.state import seed_process
from xinggan.training.step import GANParts, plain

__all__ = ["build_parts", "probe_attention"]

Notice = Callable[[str], None]


def _adam(cfg: Config, module: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    return torch.optim.Adam(module.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                            weight_decay=o.weight_decay)


def _amp_dtype(cfg: Config, device: torch.device, notice: Notice) -> Optional[torch.dtype]:
    amp = cfg.train.amp
    try:  # bf16 autocast also runs on CPU; fp16 needs CUDA (its grad scaler)
        dtype, line = resolve_amp(amp, device)
    except PrecisionError as error:
        raise ConfigError(f"train.amp: {error}") from None
    if amp == "auto" or "emulated" in line:
        notice(f"train.amp={amp}: {line}")
    return dtype


def _compile(module: nn.Module, notice: Notice) -> nn.Module:
    """``torch.compile(module)``; eager mode, with a notice, where Inductor cannot run."""
    try:
        from torch._inductor import config as _inductor_config  # noqa: F401
    except Exception as error:  # pragma: no cover - an install without Inductor
        notice(f"train.compile: torch.compile is unavailable ({type(error).__name__}: {error}); "
               "training runs in eager mode")
        return module
    return torch.compile(module)


def build_parts(cfg: Config, device: torch.device, rank: int = 0, world_size: int = 1,
                notice: Notice = print) -> GANParts:
    """Networks, optimisers, losses, pools and scaler for ``rank`` of ``world_size`` on
    ``device``; ``notice`` hears what runs instead of what was asked."""
    if cfg.train.batch_size % world_size:
        raise ConfigError(
            f"train.batch_size: the global batch {cfg.train.batch_size} is not divisible by "
            f"the {world_size} processes")
    amp_dtype = _amp_dtype(cfg, device, notice)

    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    nets = (build_generator(cfg), *build_discriminators(cfg))  # generator, shape D, appearance D
    if cfg.train.sync_batchnorm and world_size > 1:
        nets = tuple(nn.SyncBatchNorm.convert_sync_batchnorm(m) for m in nets)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.preserve_format
    generator, shape_d, appearance_d = (m.to(device, memory_format=memory_format) for m in nets)
    opt_g, opt_shape_d, opt_appearance_d = (_adam(cfg, m) for m in (generator, shape_d,
                                                                     appearance_d))
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)
    losses = build_losses(cfg).to(device)
    shape_pool, appearance_pool = build_image_pools(cfg)

    seed_process(cfg.train.seed, rank)  # per-rank streams for everything random from here on

    if world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        g = cfg.model.generator
        # ablations that leave parameters out of the graph (e.g. the last block's shape update
        # when no fusion head reads the shape code) need DDP's unused-parameter scan
        unused = not (g.fusion and g.appearance_update and g.shape_update)
        generator = DistributedDataParallel(generator, device_ids=ids,
                                            find_unused_parameters=unused)
        shape_d = DistributedDataParallel(shape_d, device_ids=ids)
        appearance_d = DistributedDataParallel(appearance_d, device_ids=ids)
    if cfg.train.compile:
        generator = _compile(generator, notice)
    return GANParts(
        generator=generator, shape_d=shape_d, appearance_d=appearance_d, opt_g=opt_g,
        opt_shape_d=opt_shape_d, opt_appearance_d=opt_appearance_d, losses=losses,
        shape_pool=shape_pool, appearance_pool=appearance_pool, scaler=scaler,
        loss_cfg=cfg.loss, autocast=lambda: autocast(device, amp_dtype), amp_dtype=amp_dtype,
        memory_format=memory_format)


def probe_attention(parts: GANParts, batch: dict, notice: Notice) -> None:
    """Before the first compiled step on CUDA: one eager forward and backward of the plain
    generator on the first batch, so that ``attention_impl: auto`` has asked PyTorch which fused
    kernel takes each attention shape (the compiled graph reuses the answers; a compiled graph
    must never run SDPA's math path with its N x N maps).  RNG states and BatchNorm statistics
    are put back, and the gradients dropped."""
    generator = plain(parts.generator)
    device = next(generator.parameters()).device
    buffers = {k: v.clone() for k, v in generator.named_buffers()}
    with torch.random.fork_rng(devices=[device]), parts.autocast():
        out = generator(batch["source_image"], batch["source_pose"], batch["target_pose"])
        out.float().mean().backward()
    generator.zero_grad(set_to_none=True)
    with torch.no_grad():
        for k, v in generator.named_buffers():
            v.copy_(buffers[k])
    for key, kernels in attention.SDPA_KERNELS.items():
        if not attention.auto_sdpa_backends(kernels):
            notice(f"attention_impl auto: no fused SDPA kernel for q {key[2]}, v {key[4]} "
                   f"({key[1]}); that attention runs 'chunked'")
