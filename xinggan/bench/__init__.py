"""Benchmarking: :mod:`.harness` (how), :mod:`.workloads` (what), :mod:`.report` (the reports)."""
