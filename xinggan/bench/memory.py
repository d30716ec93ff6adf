"""Peak memory of one generator training step on the CPU, in this (fresh) process.

    python -m xinggan.bench.memory --config configs/market.yaml [--config overlay.yaml]
                                   [--set key=value ...] [--batch 1] [--released] [--threads N]

Builds the config's generator (ours from seed 0, or with ``--released`` the literal released
forward pass on the same weights) and its inputs, then runs one training step (forward in
train mode, L1 loss against a random target, backward) and prints, as one JSON line, the
peak resident set during the step and its rise over the resident set before it
(``peak_kb``, ``rise_kb``, ``method``: :func:`xinggan.bench.harness.peak_rss_over`).

The benchmark (:func:`xinggan.bench.workloads.cpu_peak_rise`) and ``scripts/model_table.py``
run it through :func:`xinggan.bench.harness.measure_in_fresh_process`, so that nothing the
measuring process did before (other models, freed heap pages) inflates the peak. The backend
flags are the config's, as training sets them (:func:`xinggan.runtime.configure_backends`).
"""
from __future__ import annotations

import argparse
import json
import sys

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m xinggan.bench.memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True,
                   help="config file (repeat for overlays, later ones on top)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--released", action="store_true",
                   help="the released forward pass instead of ours (XingGAN configs)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)

    from xinggan.bench.harness import peak_rss_over
    from xinggan.bench.workloads import generator_train_step, load
    from xinggan.runtime import configure_backends

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load(args.config, args.set)
    configure_backends("cpu", deterministic=cfg.train.deterministic, tf32=cfg.train.tf32)
    step = generator_train_step(cfg, args.batch, torch.device("cpu"), released=args.released)
    print(json.dumps(peak_rss_over(step)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
