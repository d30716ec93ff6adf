"""Inference: load a generator from a checkpoint, generate test pairs, and name the results.

A checkpoint embeds its resolved config, so ``load_generator(path)`` needs nothing else:

    >>> generator = xinggan.load_generator("converted.pt", device="cuda")
    >>> image = generator(source_image, source_pose, target_pose)  # (B, 3, H, W) in [-1, 1]

``generate_pairs`` runs a generator over every pair of a dataset and writes one image per pair,
named by the project's single naming rule, :func:`result_stem`: the generated image of pair
(a, b) is ``<stem a>___<stem b>.png``. PNG keeps the 8-bit values exact; an evaluation protocol
applies its own JPEG round trip where the paper's scripts did.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Optional, Union

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Subset

from xinggan.checkpoint import CheckpointError, load_checkpoint
from xinggan.config import ConfigError, config_from_dict
from xinggan.data.dataset import model_inputs
from xinggan.data.pairs import result_stem
from xinggan.precision import autocast
from xinggan.progress import progress as progress_bar
from xinggan.visualize import pair_grid, to_uint8

# The columns of the image grid, in pair_grid's order.
_GRID_KEYS = ("source_image", "source_pose", "target_pose", "generated", "target_image")


def embedded_config(state: dict, path: Union[str, Path]):
    """The resolved config a checkpoint (read from ``path``) carries; a :class:`CheckpointError`
    naming the file when it is not a valid one."""
    try:
        return config_from_dict(state["config"], source=str(path))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid embedded config: {exc}") from None


def load_generator(path: Union[str, Path], device: Union[str, torch.device] = "cpu",
                   state: Optional[dict] = None) -> nn.Module:
    """The generator of checkpoint ``path`` with its weights, on ``device``, in eval mode.

    The file is read safely (tensors and plain values only); a caller that has read it already
    passes its contents as ``state``, so that it is not read twice.  A checkpoint whose weights
    do not fit the network of its own config raises :class:`CheckpointError` listing the
    mismatches.
    """
    from xinggan.models import build_generator

    if state is None:
        state = load_checkpoint(path)
    cfg = embedded_config(state, path)
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


@torch.no_grad()
def generate_pairs(generator: torch.nn.Module, dataset, out_dir: str | Path, *,
                   batch_size: int = 32, device: str | torch.device = "cpu",
                   num_workers: int = 0, max_pairs: int = 0, amp_dtype: Optional[torch.dtype] = None,
                   progress: bool = True, grid_path: Optional[str | Path] = None,
                   grid_pairs: int = 8) -> int:
    """Run ``generator`` on every pair of ``dataset`` (a :class:`PairDataset`) in order; return
    the number written. Inputs are made on ``device`` by :func:`model_inputs`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    sigma = dataset.sigma
    if max_pairs:
        dataset = Subset(dataset, range(min(max_pairs, len(dataset))))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    generator.eval()
    bar = progress_bar(total=len(dataset), unit="img", desc="generating", disable=not progress)
    written = 0
    grid_rows: list[dict] = []
    for batch in loader:
        inputs = model_inputs(batch, device, sigma)
        with autocast(device, amp_dtype):
            fake = generator(inputs["source_image"], inputs["source_pose"],
                             inputs["target_pose"]).float()
        images = to_uint8(fake)
        for i, (a, b) in enumerate(zip(batch["source_name"], batch["target_name"])):
            Image.fromarray(images[i]).save(out_dir / f"{result_stem(a, b)}.png")
        written += len(images)
        if grid_path is not None and len(grid_rows) < grid_pairs:
            inputs["generated"] = fake
            take = min(grid_pairs - len(grid_rows), len(images))
            grid_rows += [{k: inputs[k][i].cpu() for k in _GRID_KEYS} for i in range(take)]
        bar.update(len(images))
    bar.close()
    if grid_path is not None and grid_rows:
        stack = [torch.stack([row[k] for row in grid_rows]) for k in _GRID_KEYS]
        Image.fromarray(pair_grid(*stack)).save(grid_path)
    return written
