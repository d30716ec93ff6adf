"""The qualitative comparison figure (matplotlib): one row per test pair; columns source, target
pose, target, then one per method, named above it. Methods are result folders in any layout
:mod:`xinggan.metrics.layouts` reads, or run folders holding one. Images are drawn at native
resolution (1 pixel = 1 point, no interpolation); labels are vector text in the PDF.
"""
import random
import textwrap
import warnings
from pathlib import Path
from typing import Optional, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from xinggan.data.pairs import PAIR_SEPARATOR
from xinggan.metric_registry import get_protocol
from xinggan.metrics.inputs import load_rgb
from xinggan.metrics.layouts import IMAGE_EXTENSIONS, LayoutError, resolve_results, strip_image_name
from xinggan.metrics.ssim import ssim
from xinggan.visualize import draw_skeleton


class FigureError(ValueError):
    """Bad input to the figure; one line naming the file, method or pair."""


def read_methods(specs: Sequence[str], dataset_pairs: Sequence, image_width: int) -> dict:
    """``NAME=FOLDER`` specs -> ``{name: {(source stem, target stem): PanelRef}}``, in order."""
    methods = {}
    for spec in specs:
        name, _, text = spec.partition("=")
        folder = Path(text)
        if not name or not text or name in methods:
            raise FigureError(f"{spec}: expected NAME=FOLDER with a new name")
        images = next((c for c in (folder / "images", folder / "results" / "images", folder) if c.is_dir()
                       and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in c.iterdir())), None)
        if images is None:
            raise FigureError(f"{spec}: no .png/.jpg results in {folder}, nor in its images/ or results/images/")
        try:
            try:
                found = resolve_results(images, image_width=image_width)
            except LayoutError as exc:  # names that split in several places: the dataset's pairs decide
                if "more than one '_2_'" not in str(exc):
                    raise
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    found = resolve_results(images, pairs=list(dataset_pairs), image_width=image_width)
        except LayoutError as exc:
            raise FigureError(f"{spec}: {str(exc).splitlines()[0]}") from None
        methods[name] = {(strip_image_name(s), strip_image_name(t)): ref
                         for (s, t), ref in zip(found.pairs, found.generated)}
    return methods


def read_pair_list(path: Path) -> list:
    """``<from>___<to>`` per line (``#`` comments skipped) -> [(stem, stem, "file:line")]."""
    out = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line and line.count(PAIR_SEPARATOR) != 1:
            raise FigureError(f"{path}:{number}: {line!r} is not a <from>{PAIR_SEPARATOR}<to> pair name")
        if line:
            a, b = line.split(PAIR_SEPARATOR)
            out.append((strip_image_name(a.strip()), strip_image_name(b.strip()), f"{path}:{number}"))
    if not out:
        raise FigureError(f"--pairs {path}: no pair names in it")
    return out


def _ssim_spread(dataset, methods: dict, keys: list, by_key: dict, protocol: str) -> np.ndarray:
    """Per pair: max - min over the methods of the protocol's SSIM against the target."""
    preset = get_protocol(protocol)
    scale, scores = (255.0 if preset.ssim_input == "unit" else 1.0), {name: [] for name in methods}
    for start in range(0, len(keys), 64):
        part = keys[start:start + 64]
        target = torch.from_numpy(load_rgb([dataset.image_dir / by_key[k][1] for k in part])).permute(0, 3, 1, 2)
        for name, panels in methods.items():
            generated = torch.from_numpy(load_rgb([panels[k] for k in part])).permute(0, 3, 1, 2)
            if generated.shape != target.shape:
                raise FigureError(f"{name}: images of {tuple(generated.shape[2:])}, the dataset's "
                                  f"{tuple(target.shape[2:])} (H, W)")
            scores[name].append(ssim(generated.double() / scale, target.double() / scale, preset.ssim))
    table = torch.stack([torch.cat(s) for s in scores.values()]).numpy()
    return table.max(axis=0) - table.min(axis=0)


def select_pairs(dataset, methods: dict, rows: int, select: str = "spread", seed: int = 0,
                 pair_list: Optional[list] = None, protocol: str = "patn-market") -> list:
    """The dataset pairs (source name, target name) of the figure's rows, in row order;
    ``methods`` as :func:`read_methods` returns them."""
    by_key = {(strip_image_name(a), strip_image_name(b)): (a, b) for a, b in dataset.pairs}
    if pair_list is not None:
        for a, b, where in pair_list:
            if (a, b) not in by_key:
                raise FigureError(f"{where}: pair {a}___{b} is not a test pair of {dataset.root}")
            lacking = [name for name, panels in methods.items() if (a, b) not in panels]
            if lacking:
                raise FigureError(f"method {lacking[0]} has no image of pair {a}___{b} ({where})")
        return [by_key[(a, b)] for a, b, _ in pair_list]
    keys = [k for k in by_key if all(k in panels for panels in methods.values())]
    if not keys or rows < 1:
        raise FigureError(f"--rows {rows}, and the methods share {len(keys)} test pairs of {dataset.root}")
    if select == "first":
        picked = keys[:rows]
    elif select == "random":
        picked = random.Random(seed).sample(keys, min(rows, len(keys)))
    elif select == "spread" and len(methods) > 1:
        spread = _ssim_spread(dataset, methods, keys, by_key, protocol)
        picked = [keys[i] for i in sorted(range(len(keys)), key=lambda i: (-spread[i], i))[:rows]]
    else:
        raise FigureError(f"--select {select!r}: spread (two methods or more), random or first")
    return [by_key[k] for k in picked]


def figure_columns(dataset, methods: dict, pairs: Sequence) -> tuple[list, list]:
    """(columns of (H, W, 3) uint8 images, one per row; their labels)."""
    sources = list(load_rgb([dataset.image_dir / s for s, _ in pairs]))
    targets = list(load_rgb([dataset.image_dir / t for _, t in pairs]))
    keys = [(strip_image_name(s), strip_image_name(t)) for s, t in pairs]
    generated = [list(load_rgb([panels[k] for k in keys])) for panels in methods.values()]
    poses = [draw_skeleton(dataset.annotations[t], img.shape[0], img.shape[1]) for (_, t), img in zip(pairs, targets)]
    return [sources, poses, targets, *generated], ["source", "target pose", "target", *methods]


def draw(columns: Sequence[Sequence[np.ndarray]], labels: Sequence[str], paths: Sequence[Path]) -> tuple:
    """Draw the grid (1 pixel = 1 point), save it to each of ``paths`` (their folders must exist);
    (height, width) of a panel."""
    sizes = {img.shape[:2] for column in columns for img in column}
    if len(sizes) != 1:
        raise FigureError(f"the images have several sizes (H, W) {sorted(sizes)}; a figure needs one")
    (h, w), rows = sizes.pop(), len(columns[0])
    gap, font = max(2, round(w / 16)), min(12.0, max(6.0, h / 10))
    lines = [textwrap.wrap(label, max(4, int(w / (0.55 * font)))) or [""] for label in labels]
    header = round(max(len(x) for x in lines) * 1.25 * font) + gap
    width, height = gap + len(columns) * (w + gap), gap + header + rows * (h + gap)
    with matplotlib.rc_context({"pdf.fonttype": 42}):  # embedded TrueType: labels are text in the PDF
        fig = Figure(figsize=(width / 72, height / 72), dpi=72)
        for c, (column, label) in enumerate(zip(columns, lines)):
            x = gap + c * (w + gap)
            fig.text((x + w / 2) / width, 1 - gap / height, "\n".join(label), ha="center", va="top",
                     fontsize=font, linespacing=1.1)
            for r, image in enumerate(column):
                bottom = 1 - (gap + header + r * (h + gap) + h) / height
                fig.add_axes((x / width, bottom, w / width, h / height), frameon=False, xticks=[],
                             yticks=[]).imshow(image, interpolation="none", aspect="auto")
        for path in paths:
            fig.savefig(path, dpi=72)
    return h, w
