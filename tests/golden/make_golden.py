"""Regenerate the golden outputs of tests/test_models.py::test_golden_tiny_generator_output.

    python tests/golden/make_golden.py

Run it only after an intended change of the generator's computation, and say why in the
commit: the test exists to catch unintended ones.  The outputs are those of
``golden_outputs()`` in tests/test_models.py (tiny config, fixed seed, eval mode).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main() -> None:
    spec = importlib.util.spec_from_file_location("test_models", HERE.parent / "test_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    outputs = module.golden_outputs()
    torch.save(outputs, module.GOLDEN)
    for norm, tensor in outputs.items():
        print(f"{norm}: {tuple(tensor.shape)} mean {tensor.mean():.6f} std {tensor.std():.6f}")
    print(f"wrote {module.GOLDEN}")


if __name__ == "__main__":
    main()
