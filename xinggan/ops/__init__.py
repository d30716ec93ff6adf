"""Hand-written kernels, kept apart from the networks that use them.

The network files in :mod:`xinggan.models` read like the paper; what makes them fast or lean
lives here, each piece computing exactly what the plain reference path computes:

- :mod:`xinggan.ops.attention`: ``softmax(q k^T) v`` as SDPA, a reference ``bmm``, or a chunked
  autograd function with a recomputing backward;
- :mod:`xinggan.ops.lean_layers`: reflection pad + conv and ReLU + dropout with leaner backward
  passes;
- :mod:`xinggan.ops.reflection`: the reflection pad's backward as a deterministic fold of slices
  and adds, used whenever ``torch.use_deterministic_algorithms`` is on
  (``docs/determinism.md``).
"""
