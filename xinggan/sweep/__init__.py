"""Ablation sweeps: :mod:`.variants` (the variants, the sweep folder, where each stands),
:mod:`.ablation` (the table), :mod:`.jobs` (a step of a variant as a submitit job),
:mod:`.launch` (local and Slurm launchers) and :mod:`.cli` (``scripts/sweep.py``)."""
