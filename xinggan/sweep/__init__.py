"""Ablation sweeps: :mod:`.ablation` (variants, status, table), :mod:`.jobs`, :mod:`.launch`."""
