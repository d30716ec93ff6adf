"""Load a trained (or converted) XingGAN generator from a checkpoint, ready for inference.

A checkpoint embeds its resolved config, so ``load_generator(path)`` needs nothing else:

    >>> generator = xinggan.load_generator("converted.pt", device="cuda")
    >>> image = generator(source_image, source_pose, target_pose)  # (B, 3, H, W) in [-1, 1]
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Union

import torch
from torch import nn

from xinggan.checkpoint import CheckpointError, load_checkpoint
from xinggan.config import ConfigError, config_from_dict


def load_generator(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> nn.Module:
    """The generator of checkpoint ``path`` with its weights, on ``device``, in eval mode.

    The file is read safely (tensors and plain values only).  A checkpoint whose weights do
    not fit the network of its own config raises :class:`CheckpointError` listing the
    mismatches.
    """
    from xinggan.models import build_generator

    state = load_checkpoint(path)
    try:
        cfg = config_from_dict(state["config"], source=str(path))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid embedded config: {exc}") from None
    with torch.device("meta"):  # shapes only: the checkpoint provides every value
        generator = build_generator(cfg)
    weights = state["generator"]
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: 'generator' is not a state dict")
    expected = generator.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong_shape = [
        f"{k}: checkpoint {list(weights[k].shape)}, model {list(expected[k].shape)}"
        for k in expected if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        lines = [f"{path}: the generator weights do not match the network of the embedded "
                 "config (a checkpoint of another model?)"]
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("shape mismatch", wrong_shape)):
            if items:
                shown = items[:20]
                if len(items) > 20:
                    shown.append(f"... and {len(items) - 20} more")
                lines.append(f"  {title} ({len(items)}): " + ", ".join(shown))
        raise CheckpointError("\n".join(lines))
    generator.load_state_dict(weights, strict=True, assign=True)
    left = [name for name, t in itertools.chain(generator.named_parameters(),
                                                generator.named_buffers()) if t.is_meta]
    if left:  # pragma: no cover - every tensor of the network is in its state dict
        raise CheckpointError(f"{path}: no values for {', '.join(left)}")
    return generator.to(device).eval()
