"""Benchmarking: speed and memory of the networks, beside the released forward pass.

- :mod:`xinggan.bench.harness`: how things are timed (warm-up, repeats, median/min/max,
  CUDA synchronisation), CUDA peaks, and peak resident memory in a fresh process;
- :mod:`xinggan.bench.memory`: the fresh process's entry point
  (``python -m xinggan.bench.memory``: one generator training step on the CPU);
- :mod:`xinggan.bench.workloads`: what is measured (generator eval and training steps, the
  full training iteration, the released forward pass, attention implementations, AMP) and the
  plan of a run;
- :mod:`xinggan.bench.report`: the JSON and Markdown reports, the projection of a config's
  training hours, and the released code's reference cost
  (``benchmarks/reference_cost.json``).

``scripts/benchmark.py`` is the command line over these; ``scripts/model_table.py`` uses the
harness, the memory entry point and the report writer.
"""
