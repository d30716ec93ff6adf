"""Hand-written kernels, kept apart from the networks that use them.

The network files in :mod:`xinggan.models` read like the paper; what makes them fast or lean
lives here, each piece with a test that it equals the plain reference path:

- :mod:`xinggan.ops.attention`: ``softmax(q k^T) v`` as SDPA, a reference ``bmm``, or a chunked
  autograd function with a recomputing backward (``tests/test_attention.py``);
- :mod:`xinggan.ops.lean_layers`: reflection pad + conv and ReLU + dropout with leaner backward
  passes (``tests/test_lean_layers.py``);
- :mod:`xinggan.ops.reflection`: the reflection pad's backward as a deterministic fold of slices
  and adds, used whenever ``torch.use_deterministic_algorithms`` is on
  (``tests/test_determinism.py``, ``docs/determinism.md``).
"""
