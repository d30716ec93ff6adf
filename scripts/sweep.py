#!/usr/bin/env python
"""Ablation studies in one command: a base config plus overlays, each variant trained and scored
as a submitit job on this machine (--launcher local) or on Slurm (--launcher slurm), then one
table (Markdown, CSV, LaTeX). Run with --help; the logic is in xinggan/sweep/, the guide in
docs/ablations.md.

    python scripts/sweep.py --base configs/market.yaml \\
        --overlays configs/ablations/sa_only.yaml configs/ablations/as_only.yaml \\
        --out sweeps/market_ablation
    python scripts/sweep.py --status sweeps/market_ablation
"""
from __future__ import annotations

import sys

from xinggan.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
