"""Hand-written kernels behind :mod:`xinggan.models`, each computing what the plain path computes:
attention (:mod:`.attention`), lean pad + conv and ReLU + dropout (:mod:`.lean_layers`) and a
deterministic reflection-pad backward (:mod:`.reflection`).
"""
