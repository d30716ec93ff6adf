"""Train XingGAN / XingGAN++.

    python train.py --config configs/market.yaml [--config OVERLAY ...] [--set key=value ...]
                    [--run-dir DIR] [--resume] [--dry-run]

Multi-GPU: ``torchrun --nproc_per_node=N train.py ...`` (DistributedDataParallel; NCCL on GPU,
gloo on CPU).  The newest checkpoint is always ``<run-dir>/checkpoints/latest.pt``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


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
    from xinggan.models import build_discriminators, build_generator, count_parameters

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
    from xinggan.config import ConfigError, load_config_or_exit
    from xinggan.training import Trainer, TrainingError, distributed_context, pick_device

    cfg = load_config_or_exit(args.config, args.set)
    run_dir = Path(args.run_dir or Path("runs") / Path(args.config[0]).stem)

    if args.dry_run:
        print(cfg.to_yaml())
        print(module_summary(cfg))
        return 0

    rank, local_rank, world = distributed_context()
    try:
        device = pick_device(cfg.train.device, local_rank)  # not there: one line, exit 2
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    # Before the process group and any CUDA work: with train.deterministic this puts
    # CUBLAS_WORKSPACE_CONFIG in the environment, which cuBLAS reads only when it starts.
    from xinggan.runtime import configure_backends

    backends = configure_backends(device, deterministic=cfg.train.deterministic,
                                  tf32=cfg.train.tf32)
    if device.type == "cuda":  # this process's GPU is the current one (pinned-memory thread,
        torch.cuda.set_device(device)  # bf16 support check), for one process as for several
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if rank == 0:
        print("backends: " + "; ".join(backends), flush=True)

    code = 0
    try:
        from xinggan.checkpoint import CheckpointError
        from xinggan.data import DataError

        trainer = Trainer(cfg, run_dir, device=device, rank=rank, world_size=world,
                          progress=not args.no_progress,
                          allow_world_size_change=args.allow_world_size_change)
        if rank == 0:
            print(f"training {cfg.model.name} on {device} x{world}: {cfg.data.root}, "
                  f"{cfg.train.iterations} iterations at batch {cfg.train.batch_size}; run {run_dir}")
        result = trainer.fit(resume=args.resume)
        if rank == 0:
            print(f"finished at iteration {result['iteration']} ({result['stopped']}); "
                  f"checkpoint {trainer.checkpoint_path}")
    except (ConfigError, TrainingError, CheckpointError, DataError) as exc:
        print(f"error: {clean_message(exc)}", file=sys.stderr)
        code = 1
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return code


if __name__ == "__main__":
    sys.exit(main())
