"""Inference: :func:`load_generator` (a checkpoint embeds its config, so the path is enough) and
:func:`generate_pairs`, which writes one PNG per test pair, named by :func:`result_stem`."""
from __future__ import annotations

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
from xinggan.models import build_generator
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
    """The generator of checkpoint ``path`` (or of its contents ``state``, read already), on ``device``,
    in eval mode; :class:`CheckpointError` lists weights that do not fit its config's network."""
    state = load_checkpoint(path) if state is None else state
    cfg = embedded_config(state, path)
    with torch.device("meta"):  # shapes only: the checkpoint provides every value
        generator = build_generator(cfg)
    weights = state["generator"]
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: 'generator' is not a state dict")
    expected = generator.state_dict()
    problems = {"missing": [k for k in expected if k not in weights],
                "unexpected": [k for k in weights if k not in expected],
                "shape mismatch": [f"{k}: checkpoint {list(weights[k].shape)}, model {list(expected[k].shape)}"
                                   for k in expected if k in weights and weights[k].shape != expected[k].shape]}
    if any(problems.values()):
        lines = [f"{path}: the generator weights do not match the network of the embedded config (a checkpoint "
                 "of another model?)"]
        for title, items in problems.items():
            more = f", ... and {len(items) - 20} more" if len(items) > 20 else ""
            lines += [f"  {title} ({len(items)}): " + ", ".join(items[:20]) + more] if items else []
        raise CheckpointError("\n".join(lines))
    generator.load_state_dict(weights, strict=True, assign=True)
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
