"""The inputs of a folder evaluation: :func:`resolve_inputs` matches and checks every file up front,
:class:`BatchReader` reads pairs in batches with the protocol's image steps and the target pose masks.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import numpy as np
import torch
from PIL import Image

from ..data import read_annotations, read_pairs
from ..data.pairs import PAIR_SEPARATOR
from .l1 import to_signed_unit
from .layouts import IMAGE_EXTENSIONS, LayoutError, PanelRef, listing, resolve_results, strip_image_name
from .mask import PoseMaskCache
from ..metric_registry import DATASET_SIZES, Protocol
from .preprocess import jpeg_roundtrip, pad_white_columns, released_8bit

__all__ = ["EvaluationInputError", "EvaluationInputs", "Batch", "BatchReader", "resolve_inputs", "load_rgb",
           "to_tensor", "image_files", "image_size", "target_keypoints", "detections_by_pair"]

JPEG_SUFFIXES = (".jpg", ".jpeg")


class EvaluationInputError(ValueError):
    """Generated/target images or keypoint files are missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class EvaluationInputs:
    """What is scored: one generated and one target image per pair, all of one size."""

    generated_dir: Path
    pairs: list                 # (source name, target name)
    generated: list             # PanelRef per pair
    targets: list               # PanelRef per pair
    targets_from_strips: bool   # the targets are panel 2 of the released strips
    layout: str                 # name of the matched layout
    panels: int                 # panels per generated file (1: single images)
    pairs_from_files: bool      # the pairs were read from the file names (no pairs CSV)
    height: int
    width: int
    targets_label: str          # the targets' source, as the report names it
    pairs_label: str            # the pairs' source, as the report names it
    file_order: str

    def details(self) -> dict:
        """The report's description of the inputs."""
        return {"image_size": [self.height, self.width],
                "dataset": DATASET_SIZES.get((self.height, self.width), "unknown"),
                "generated_dir": str(self.generated_dir), "panels": self.panels,
                "generated_panel": self.generated[0].panel,
                "targets": self.targets_label,
                "pairs": self.pairs_label,
                "file_order": self.file_order if self.pairs_from_files else "pairs CSV"}


def image_files(folder: Path) -> list[Path]:
    """The image files of ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image file, read from its header."""
    with Image.open(path) as image:
        width, height = image.size
    return height, width


def _panel_size(ref: PanelRef, sizes: dict) -> tuple[int, int]:
    height, width = sizes[ref.path]
    return height, width // ref.panels


def _check_images(generated: list, targets: list, protocol: Protocol) -> tuple[int, int]:
    """Every file readable, every target the size of its generated image (and of the protocol)."""
    missing = [str(t.path) for t in targets if not t.path.is_file()]
    if missing:
        raise EvaluationInputError(f"{len(missing)} target image(s) are missing:" + listing(missing))
    unreadable, mismatched = [], []
    sizes = {}
    for path in dict.fromkeys([g.path for g in generated] + [t.path for t in targets]):
        try:
            sizes[path] = image_size(path)
        except Exception as error:  # PIL raises several types for broken files
            unreadable.append(f"{path}: {type(error).__name__}: {error}")
    if unreadable:
        raise EvaluationInputError(f"{len(unreadable)} image file(s) cannot be read:" +
                                   listing(unreadable))

    def label(ref: PanelRef) -> str:
        return f"{ref.path} (panel {ref.panel})" if ref.panel is not None else str(ref.path)

    for gen, tgt in zip(generated, targets):
        gh, gw = _panel_size(gen, sizes)
        th, tw = _panel_size(tgt, sizes)
        if protocol.image_size is not None and (th, tw) != tuple(protocol.image_size):
            mismatched.append(f"target {label(tgt)} is {th}x{tw}, protocol {protocol.name} expects "
                              f"{protocol.image_size[0]}x{protocol.image_size[1]} (generated {gen.name} is {gh}x{gw})")
        elif (gh, gw) != (th, tw):
            mismatched.append(f"target {label(tgt)} is {th}x{tw} but generated {label(gen)} is {gh}x{gw}")
    if mismatched:
        raise EvaluationInputError(f"{len(mismatched)} pair(s) have images of the wrong size (HxW):" +
                                   listing(mismatched))
    shapes = {_panel_size(t, sizes) for t in targets}
    if len(shapes) > 1:
        raise EvaluationInputError(f"targets have several sizes {sorted(shapes)}; a folder is scored at one size")
    return shapes.pop()


def _target_files(targets_dir: Path, pairs: list) -> list[PanelRef]:
    """``targets_dir/<target>``; a target named without extension (pairs from stems) is found as .jpg/.png."""
    def find(target: str) -> Path:
        found = [targets_dir / (target + ext) for ext in (".jpg", ".png", ".jpeg") if not Path(target).suffix]
        return next((p for p in [targets_dir / target] + found if p.is_file()), targets_dir / target)

    return [PanelRef(find(target)) for _, target in pairs]


def resolve_inputs(protocol: Protocol, generated_dir: Union[str, Path], targets_dir: Union[str, Path, None],
                   pairs_csv: Union[str, Path, None], layout: Optional[str] = None, panel: Optional[int] = None,
                   file_order: str = "sorted", log: Optional[Callable[[str], None]] = print) -> EvaluationInputs:
    """Match ``generated_dir`` to its pairs and targets and check every image (see the module)."""
    generated_dir = Path(generated_dir)
    listed = None
    if pairs_csv is not None:
        listed = read_pairs(pairs_csv)
        if not listed:
            raise EvaluationInputError(f"{pairs_csv}: no pairs")
    try:
        found = resolve_results(generated_dir, listed, pairs_csv, layout=layout, panel=panel,
                                image_width=protocol.image_size[1] if protocol.image_size else None,
                                file_order=file_order)
    except LayoutError as error:
        raise EvaluationInputError(str(error)) from None
    if log is not None:
        log(found.summary(generated_dir))
    if targets_dir is not None:
        targets, from_strips = _target_files(Path(targets_dir), found.pairs), False
    elif found.strip_targets is not None:
        targets, from_strips = found.strip_targets, True
    else:
        raise EvaluationInputError(f"{generated_dir}: layout '{found.layout.name}' holds the generated images "
                                   f"only; pass the folder of target images (--targets)")
    height, width = _check_images(found.generated, targets, protocol)
    return EvaluationInputs(
        generated_dir=generated_dir, pairs=found.pairs, generated=found.generated, targets=targets,
        targets_from_strips=from_strips, layout=found.layout.name, panels=found.panels,
        pairs_from_files=found.pairs_from_files, height=height, width=width,
        targets_label="strip panel 2" if from_strips else str(targets_dir),
        pairs_label="file names" if found.pairs_from_files else str(pairs_csv), file_order=file_order)


def _decode(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as error:
        raise EvaluationInputError(f"{path}: cannot decode image ({type(error).__name__}: {error})") from None


def load_rgb(refs: Iterable, cache: Optional[dict] = None) -> np.ndarray:
    """uint8 ``(B, H, W, 3)`` of paths or :class:`PanelRef` s; ``cache`` (path -> image) shares a strip's decode."""
    images = []
    for ref in refs:
        ref = ref if isinstance(ref, PanelRef) else PanelRef(Path(ref))
        if cache is not None and ref.path in cache:
            image = cache[ref.path]
        else:
            image = _decode(ref.path)
            if cache is not None:
                cache[ref.path] = image
        if ref.panel is not None:
            width = image.shape[1] // ref.panels
            image = image[:, ref.panel * width:(ref.panel + 1) * width]
        images.append(image)
    return np.stack(images)


def to_tensor(images: np.ndarray, device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> uint8 (B, 3, H, W) on device."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)


@dataclass
class Batch:
    """Pairs ``[start, stop)``: uint8 ``(B, 3, H, W)`` tensors, plain and with the protocol's white
    columns; ``generated_rgb`` (numpy, after the round trip); bool ``(B, 1, H, W)`` masks or None."""

    start: int
    stop: int
    generated_rgb: np.ndarray
    generated: torch.Tensor
    target: torch.Tensor
    generated_padded: torch.Tensor
    target_padded: torch.Tensor
    masks: Optional[torch.Tensor] = None
    masks_padded: Optional[torch.Tensor] = None

    @cached_property
    def signed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(generated, target) as float32 in [-1, 1] (``x / 127.5 - 1``)."""
        return to_signed_unit(self.generated), to_signed_unit(self.target)


class BatchReader:
    """Reads :class:`Batch` es of ``inputs``; ``target_keypoints`` ``(N, 18, 2)`` when a masked metric runs."""

    def __init__(self, inputs: EvaluationInputs, protocol: Protocol, roundtrip: bool, device: torch.device,
                 target_keypoints: Optional[np.ndarray] = None):
        self.inputs, self.roundtrip, self.device = inputs, roundtrip, device
        self.pad = protocol.pad_columns
        self.target_keypoints = target_keypoints
        self.target_names = [target for _, target in inputs.pairs]
        self.mask_cache = PoseMaskCache(inputs.height, inputs.width)
        self.padded_mask_cache = PoseMaskCache(inputs.height, inputs.width + 2 * self.pad, shift_x=self.pad)

    def read(self, start: int, stop: int) -> Batch:
        inputs, pad = self.inputs, self.pad
        decoded: dict = {}  # a strip is decoded once for its target and generated panels
        gen = load_rgb(inputs.generated[start:stop], decoded)
        tgt = load_rgb(inputs.targets[start:stop], decoded)
        if self.roundtrip:  # step 1 of the PATN protocol (see preprocess.py)
            if not inputs.targets_from_strips:  # strip panels already are step 1's output
                tgt = jpeg_roundtrip(released_8bit(tgt))
            lossless = [i for i, ref in enumerate(inputs.generated[start:stop])
                        if ref.panel is None and ref.path.suffix.lower() not in JPEG_SUFFIXES]
            if lossless:
                gen[lossless] = jpeg_roundtrip(gen[lossless])
        gen_t, tgt_t = to_tensor(gen, self.device), to_tensor(tgt, self.device)
        batch = Batch(start, stop, gen, gen_t, tgt_t,
                      to_tensor(pad_white_columns(gen, pad), self.device) if pad else gen_t,
                      to_tensor(pad_white_columns(tgt, pad), self.device) if pad else tgt_t)
        if self.target_keypoints is not None:
            names, kp = self.target_names[start:stop], self.target_keypoints[start:stop]
            batch.masks = torch.from_numpy(self.mask_cache(names, kp)).to(self.device)[:, None]
            batch.masks_padded = (torch.from_numpy(self.padded_mask_cache(names, kp)).to(self.device)[:, None]
                                  if pad else batch.masks)
        return batch


def _lookup(table: dict, name: str):
    """The entry of image ``name`` in ``table``, matching ``a`` with ``a.jpg`` (pairs taken from file names)."""
    if name in table:
        return table[name]
    stem = strip_image_name(name)
    for candidate in (stem + ".jpg", stem + ".png", stem):
        if candidate in table:
            return table[candidate]
    return None


def target_keypoints(annotations_csv, pairs: list) -> np.ndarray:
    """``(N, 18, 2)`` keypoints of each pair's target, from the annotation CSV."""
    table = read_annotations(annotations_csv)
    missing = sorted({t for _, t in pairs if _lookup(table, t) is None})
    if missing:
        raise EvaluationInputError(f"{annotations_csv}: no keypoints for {len(missing)} target image(s):" +
                                   listing(missing))
    return np.stack([_lookup(table, t) for _, t in pairs])


def detections_by_pair(detected_csv, pairs: list, generated: list) -> list[np.ndarray]:
    """Detected keypoints per pair; rows are named after the generated files (any extension)."""
    table = read_annotations(detected_csv)
    by_file, by_pair = {}, {}
    for name in table:
        base = Path(name).name
        by_file[strip_image_name(base)] = table[name]
        parts = base.split(PAIR_SEPARATOR)
        if len(parts) == 2:
            by_pair[(strip_image_name(parts[0]), strip_image_name(parts[1]))] = table[name]
    rows, missing = [], []
    for (source, target), ref in zip(pairs, generated):
        key = (strip_image_name(source), strip_image_name(target))
        if strip_image_name(ref.name) in by_file:
            rows.append(by_file[strip_image_name(ref.name)])
        elif key in by_pair:
            rows.append(by_pair[key])
        else:
            missing.append(ref.name)
    if missing:
        raise EvaluationInputError(f"{detected_csv}: no detected keypoints for {len(missing)} of {len(pairs)} "
                                   f"generated images (rows are named after the generated files):" +
                                   listing(missing))
    return rows
