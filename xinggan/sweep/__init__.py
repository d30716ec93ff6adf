"""Ablation sweeps: a base config plus overlays, each variant trained and scored as a submitit job
on this machine or on Slurm, resumed after preemption, and summed up in one table.

:mod:`.plan` (variants, the sweep folder, per-variant state), :mod:`.job` (one variant as a
requeueable job), :mod:`.launch` (executors, the driver, ``--status``, the ablation table) and
:mod:`.cli` (``scripts/sweep.py``).
"""
from xinggan.sweep.plan import BASE_NAME, SweepError, Variant, plan_variants, read_state

__all__ = ["BASE_NAME", "SweepError", "Variant", "plan_variants", "read_state"]
