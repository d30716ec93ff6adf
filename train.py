"""Train XingGAN / XingGAN++.

    python train.py --config configs/market.yaml [--config OVERLAY ...] [--set key=value ...]
                    [--run-dir DIR] [--resume] [--dry-run]

Multi-GPU: ``torchrun --nproc_per_node=N train.py ...``, or any launcher that sets RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT (srun): DistributedDataParallel, NCCL on GPU, gloo on CPU.
SIGTERM, SIGUSR1 and SIGUSR2 (``sbatch --signal``) stop at the end of the iteration, save and
exit 0.  The newest checkpoint is ``<run-dir>/checkpoints/latest.pt``; ``<run-dir>/status.json``
says where the run stands.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import traceback
from pathlib import Path

import torch

from xinggan.checkpoint import CheckpointError
from xinggan.config import ConfigError, load_config_or_exit
from xinggan.data import DataError
from xinggan.models import build_discriminators, build_generator, count_parameters
from xinggan.runtime import configure_backends
from xinggan.training import Trainer, TrainingError, distributed, distributed_context, pick_device

# How long a collective may wait for a rank (a rank that fails on its own is announced at once:
# xinggan.training.distributed.Watch).
COLLECTIVE_TIMEOUT_S = 600


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True,
                   help="YAML config; repeat to overlay (later files win)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override values, e.g. --set train.batch_size=16 train.amp=bf16 "
                        "(or repeat --set)")
    p.add_argument("--run-dir", default=None, help="output folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoints/latest.pt")
    p.add_argument("--allow-world-size-change", action="store_true",
                   help="resume a checkpoint written by another number of processes: every rank "
                        "is re-seeded from (seed, rank, iteration), so the run is not an exact "
                        "continuation (refused without this flag)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved config and a module summary, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def module_summary(cfg) -> str:
    """Parameters and output shapes of each top-level module, from one batch-1 forward."""
    generator = build_generator(cfg).eval()
    shape_d, appearance_d = build_discriminators(cfg)
    h, w = cfg.data.height, cfg.data.width
    rows: list[tuple[str, int, str]] = []
    hooks = []

    def record(name):
        def hook(module, inputs, output):
            shape = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
            rows.append((name, count_parameters(module), str(shape)))
        return hook

    for prefix, net in (("generator", generator), ("shape_discriminator", shape_d.eval()),
                        ("appearance_discriminator", appearance_d.eval())):
        for name, child in net.named_children():
            hooks.append(child.register_forward_hook(record(f"{prefix}.{name}")))
    with torch.no_grad():
        image = torch.zeros(1, 3, h, w)
        pose = torch.zeros(1, 18, h, w)
        fake = generator(image, pose, pose)
        rows.append(("generator output", 0, str(tuple(fake.shape))))
        shape_d(torch.cat([fake, pose], 1))
        appearance_d(torch.cat([fake, image], 1))
    for handle in hooks:
        handle.remove()
    lines = [f"{'module':<44} {'parameters':>12}  output shape (batch 1)"]
    seen = set()
    for name, n, shape in rows:
        if name in seen:
            continue
        seen.add(name)
        lines.append(f"{name:<44} {n:>12,}  {shape}")
    for label, net in (("generator", generator), ("shape_discriminator", shape_d),
                       ("appearance_discriminator", appearance_d)):
        lines.append(f"{label + ' total':<44} {count_parameters(net):>12,}")
    return "\n".join(lines)


def clean_message(exc: BaseException) -> str:
    """The message of an error, without the worker traceback a DataLoader wraps around it."""
    text = str(exc)
    marker = f"{type(exc).__name__}: "
    if "Original Traceback" in text and marker in text:
        return text[text.rindex(marker) + len(marker):].strip()
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config_or_exit(args.config, args.set)
    run_dir = Path(args.run_dir or Path("runs") / Path(args.config[0]).stem)
    if args.dry_run:
        print(cfg.to_yaml())
        print(module_summary(cfg))
        return 0

    rank, _, world = distributed_context()
    try:
        device = pick_device(cfg.train.device)  # not there: one line, exit 2
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    # Before the process group and any CUDA work: with train.deterministic this puts
    # CUBLAS_WORKSPACE_CONFIG in the environment, which cuBLAS reads only when it starts.
    backends = configure_backends(device, deterministic=cfg.train.deterministic,
                                  tf32=cfg.train.tf32)
    if device.type == "cuda":  # this process's GPU is the current one, for one process or several
        torch.cuda.set_device(device)
    watch = distributed.start("nccl" if device.type == "cuda" else "gloo", COLLECTIVE_TIMEOUT_S)
    if rank == 0:
        print("backends: " + "; ".join(backends), flush=True)
    trainer = None
    try:
        trainer = Trainer(cfg, run_dir, device=device, rank=rank, world_size=world,
                          progress=not args.no_progress,
                          allow_world_size_change=args.allow_world_size_change)
        if watch is not None:  # another rank failed: this one's save in flight completes first
            watch.before_exit = functools.partial(trainer.writer.wait, timeout=20)
        if rank == 0:
            print(f"training {cfg.model.name} on {device} x{world}: {cfg.data.root}, "
                  f"{cfg.train.iterations} iterations at batch {cfg.train.batch_size}; run {run_dir}")
        result = trainer.fit(resume=args.resume)
        if rank == 0:
            print(f"finished at iteration {result['iteration']} ({result['stopped']}); "
                  f"checkpoint {trainer.checkpoint_path}")
        code = 0
    except BaseException as exc:  # noqa: BLE001 - one line; the other ranks are told
        code = _report(exc, rank, world, watch)
    if watch is not None:
        watch.close()
    if trainer is not None:
        trainer.close()
    del trainer
    distributed.finish()  # the DDP reducers go before the process group
    return code


def _report(exc: BaseException, rank: int, world: int, watch) -> int:
    """Print one line for ``exc`` and return the exit code.  An error that every rank raised
    together is printed by rank 0; one of this rank alone is announced to the others, and the
    process ends at once (its peers may be gone, and so may the process group)."""
    if isinstance(exc, (ConfigError, TrainingError, CheckpointError, DataError)):
        line = clean_message(exc)
    elif isinstance(exc, KeyboardInterrupt):
        line = "interrupted"
    else:
        traceback.print_exc()
        line = f"{type(exc).__name__}: {clean_message(exc)}"
    if getattr(exc, "agreed", False):
        if rank == 0:
            print(f"error: {line}", file=sys.stderr, flush=True)
        return 1
    print(f"error: {f'rank {rank}: ' if world > 1 else ''}{line}", file=sys.stderr, flush=True)
    if watch is not None:
        watch.announce(line)
        sys.stdout.flush()
        os._exit(1)
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


if __name__ == "__main__":
    sys.exit(main())
