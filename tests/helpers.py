"""Plain helpers shared by several test files (``from helpers import ...``); the fixtures that
use them are in conftest.py."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The small toy dataset shared by the data tests (generated once per test session).
TOY = dict(seed=0, identities=6, test_identities=3, poses=5, test_pairs=20)

# A CPU-second-sized training setup on 64 x 32 toy data, shared by the training tests.
TINY_TRAINING = {
    "data.height": 64, "data.width": 32, "data.num_workers": 0,
    "model.generator.ngf": 8, "model.generator.n_blocks": 2,
    "model.generator.num_candidates": 2, "model.discriminator.ndf": 8,
    "model.discriminator.n_blocks": 1, "train.batch_size": 2, "train.log_every": 1,
    "train.grid_pairs": 2, "train.device": "cpu",
}


def tiny_training_overrides(root: Path, **extra) -> list[str]:
    """``key=value`` overrides of configs/toy.yaml for a tiny run on the data in ``root``."""
    values = {"data.root": str(root), **TINY_TRAINING, **extra}
    return [f"{k}={v}" for k, v in values.items()]


# Random draws in every network (dropout) and in the image pools: a resume that restores a random
# stream wrongly gives other weights.
RANDOM_DRAWS = {"model.generator.dropout": 0.5, "model.discriminator.dropout": 0.5,
                "loss.pool_size": 2}


def random_toy_config(root: Path, **extra):
    """configs/toy.yaml for a tiny run on ``root`` with :data:`RANDOM_DRAWS`, 4 iterations,
    a checkpoint every 2."""
    from xinggan.config import load_config

    return load_config(REPO / "configs" / "toy.yaml", tiny_training_overrides(
        root, **{**RANDOM_DRAWS, "train.iterations": 4, "train.checkpoint_every": 2, **extra}))


def smooth_image(rng, height: int = 128, width: int = 64):
    """A uint8 RGB image with natural-image-like structure (smooth colour fields plus noise)."""
    import numpy as np
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.normal(size=(height, width, 3)), sigma=(4, 4, 0))
    field = (field - field.min()) / (field.max() - field.min()) * 200 + 20 + rng.normal(scale=5, size=field.shape)
    return np.clip(field, 0, 255).astype(np.uint8)


def load_script(name: str, module_name: str = "", folder: str = "scripts"):
    """``<folder>/<name>.py`` imported as a module (the scripts are not a package; train.py and
    test.py sit at the top: ``folder=""``)."""
    spec = importlib.util.spec_from_file_location(module_name or f"script_{name}",
                                                  REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leaves(tree, prefix=()):
    """The (key path, value) pairs of a nested mapping."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, prefix + (key,))
    else:
        yield prefix, tree
