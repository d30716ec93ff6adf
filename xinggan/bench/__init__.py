"""Benchmarking: :mod:`.harness` (how things are timed and counted), :mod:`.workloads` (what is
measured, the plan of a run) and :mod:`.report` (the reports, the released code's reference cost);
``scripts/benchmark.py`` is their command line."""
