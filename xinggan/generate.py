"""Generate every test pair of a dataset with a trained generator and write the images.

The image for pair (a, b) is written as ``<out>/<stem a>___<stem b>.png``: the naming that
``scripts/evaluate.py`` reads back.  PNG keeps the 8-bit values exact; the evaluation protocol
applies its own JPEG round trip where the paper's scripts did.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset

from xinggan.visualize import pair_grid, to_uint8


def output_name(source_name: str, target_name: str) -> str:
    return f"{Path(source_name).stem}___{Path(target_name).stem}.png"


@torch.no_grad()
def generate_pairs(generator: torch.nn.Module, dataset, out_dir: str | Path, *,
                   batch_size: int = 32, device: str | torch.device = "cpu",
                   num_workers: int = 0, max_pairs: int = 0, amp_dtype: Optional[torch.dtype] = None,
                   progress: bool = True, grid_path: Optional[str | Path] = None,
                   grid_pairs: int = 8) -> int:
    """Run ``generator`` on every pair of ``dataset`` in order; return the number written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    if max_pairs:
        dataset = Subset(dataset, range(min(max_pairs, len(dataset))))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    generator.eval()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(dataset), unit="img", desc="generating", dynamic_ncols=True)
    written = 0
    grid_rows: list[dict] = []
    for batch in loader:
        src = batch["source_image"].to(device)
        sp = batch["source_pose"].to(device)
        tp = batch["target_pose"].to(device)
        ctx = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
               else torch.autocast(device.type, enabled=False))
        with ctx:
            fake = generator(src, sp, tp).float()
        images = to_uint8(fake)
        for i, (a, b) in enumerate(zip(batch["source_name"], batch["target_name"])):
            Image.fromarray(images[i]).save(out_dir / output_name(a, b))
        written += len(images)
        if grid_path is not None and len(grid_rows) < grid_pairs:
            take = min(grid_pairs - len(grid_rows), len(images))
            for i in range(take):
                grid_rows.append({"source_image": batch["source_image"][i],
                                  "source_pose": batch["source_pose"][i],
                                  "target_pose": batch["target_pose"][i],
                                  "generated": fake[i].cpu(), "target_image": batch["target_image"][i]})
        if bar is not None:
            bar.update(len(images))
    if bar is not None:
        bar.close()
    if grid_path is not None and grid_rows:
        stack = {k: torch.stack([r[k] for r in grid_rows]) for k in grid_rows[0]}
        grid = pair_grid(stack["source_image"], stack["source_pose"], stack["target_pose"],
                         stack["generated"], stack["target_image"])
        Image.fromarray(grid).save(grid_path)
    return written
