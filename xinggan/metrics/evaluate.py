"""Score a folder of generated images against the targets under one evaluation preset.

``evaluate_folder`` recognises how the folder names its files (:mod:`xinggan.metrics.layouts`:
this project's ``<from stem>___<to stem>.png``, the 5-panel strips ``<from>.jpg___<to>.jpg_vis.jpg``
of PATN / XingGAN / BiGraphGAN, ``<from>.jpg___<to>.jpg``, the ``<from>_2_<to>`` names of the later
repositories), prints one line saying which layout it matched and how many pairs it found, matches
the files to the pairs of a pairs CSV (or takes the pairs from the names), checks them all up
front (missing or unreadable files, sizes), then streams the pairs in batches through the
preset's steps (:mod:`xinggan.metrics.protocols`) and metrics, keeping only per-pair scores,
Inception logits and running FID sums in memory. ``write_metrics`` writes ``metrics.json`` and a
``metrics.md`` table in the paper's layout with the papers' reported numbers beside ours and the
preset name beside every number.

Strips are scored as the released ``getMetrics_*.py`` scored them: without a targets folder the
target is the strip's own panel 2 and the generated image panel 4; panels are taken as decoded
from the file, with no further JPEG round trip (they already are the output of the released
pipeline's step 1).

PCKh needs keypoints of the generated images: a CSV of detections (``detected_keypoints``), or an
OpenPose body weights file (``pose_weights``), with which the keypoints are detected here the way
PATN's ``tool/crop_*.py`` + ``compute_coordinates.py`` did: the generated image is re-saved as
JPEG at quality 75 (the released scripts cropped it out of the strip and saved it as ``.jpg``)
and passed to :mod:`xinggan.keypoints.openpose`. For single images, that extra round trip is
applied when the preset's JPEG round trip is on.

A default metric that cannot run here (no weights, no keypoints, no real set) is listed in
``skipped`` with the reason (the scripts then exit non-zero after writing the others, unless
missing metrics are allowed); a metric asked for explicitly that cannot run raises
:class:`MetricUnavailable`, which says what to provide.
"""
from __future__ import annotations

import difflib
import json
import math
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..data import read_annotations, read_pairs, write_annotations
from ..inference import PAIR_SEPARATOR
from .fid import RunningStatistics, TorchvisionInception, frechet_distance, real_statistics
from .inception_score import TFInception, inception_score_from_logits
from .layouts import IMAGE_EXTENSIONS, LayoutError, PanelRef, listing, resolve_results, strip_image_name
from .l1 import l1_distance, to_signed_unit
from .lpips import LPIPSAlex
from .mask import PoseMaskCache
from .pckh import pckh
from .protocols import (ALL_METRICS, DATASET_SIZES, PAPER_RESULTS, TABLE_ORDER, Protocol, get_protocol,
                        pad_white_columns, released_8bit)
from .protocols import jpeg_roundtrip as roundtrip_images
from .psnr import psnr
from .ssim import ssim
from .weights import MetricWeights, WeightsUnavailable

__all__ = ["MetricUnavailable", "EvaluationInputError", "evaluate_folder", "write_metrics", "format_table"]

JPEG_SUFFIXES = (".jpg", ".jpeg")
_MASK_METRICS = ("mask_ssim", "mask_is", "mask_lpips")
METRIC_LABELS = {"ssim": "SSIM", "is": "IS", "mask_ssim": "mask-SSIM", "mask_is": "mask-IS", "pckh": "PCKh",
           "fid": "FID", "lpips": "LPIPS", "mask_lpips": "mask-LPIPS", "psnr": "PSNR", "l1": "L1"}


class MetricUnavailable(RuntimeError):
    """A metric asked for explicitly cannot be computed; the message says what to provide."""


class EvaluationInputError(ValueError):
    """Generated/target images or keypoint files are missing, unreadable or inconsistent."""


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        width, height = image.size
    return height, width


def _panel_size(ref: PanelRef, sizes: dict) -> tuple[int, int]:
    height, width = sizes[ref.path]
    return height, width // ref.panels


def _check_images(generated: list, targets: list, protocol: Protocol) -> tuple[int, int]:
    """Every file readable, every target the size of its generated image (and of the preset).

    ``generated`` and ``targets``: :class:`PanelRef` (a file or one panel of a strip) or paths.
    """
    generated = [g if isinstance(g, PanelRef) else PanelRef(Path(g)) for g in generated]
    targets = [t if isinstance(t, PanelRef) else PanelRef(Path(t)) for t in targets]
    missing = [str(t.path) for t in targets if not t.path.is_file()]
    if missing:
        raise EvaluationInputError(f"{len(missing)} target image(s) are missing:" + listing(missing))
    unreadable, mismatched = [], []
    sizes = {}
    for path in dict.fromkeys([g.path for g in generated] + [t.path for t in targets]):
        try:
            sizes[path] = _image_size(path)
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
            mismatched.append(f"target {label(tgt)} is {th}x{tw}, preset {protocol.name} expects "
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


def _decode(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as error:
        raise EvaluationInputError(f"{path}: cannot decode image ({type(error).__name__}: {error})") from None


def _load_rgb(refs: Iterable, cache: Optional[dict] = None) -> np.ndarray:
    """uint8 ``(B, H, W, 3)``: whole files, or the panel each :class:`PanelRef` names.

    ``cache`` (path -> decoded image) lets the target and generated panels of one strip share a decode.
    """
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


def _to_tensor(images: np.ndarray, device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> uint8 (B, 3, H, W) on device."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)


def _detections_by_pair(detected_csv, pairs: list, generated: list) -> list[np.ndarray]:
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


def _lookup(table: dict, name: str):
    """The entry of image ``name`` in ``table``, matching ``a`` with ``a.jpg`` (pairs taken from file names)."""
    if name in table:
        return table[name]
    stem = strip_image_name(name)
    for candidate in (stem + ".jpg", stem + ".png", stem):
        if candidate in table:
            return table[candidate]
    return None


def _target_keypoints(annotations_csv, pairs: list) -> np.ndarray:
    table = read_annotations(annotations_csv)
    missing = sorted({t for _, t in pairs if _lookup(table, t) is None})
    if missing:
        raise EvaluationInputError(f"{annotations_csv}: no keypoints for {len(missing)} target image(s):" +
                                   listing(missing))
    return np.stack([_lookup(table, t) for _, t in pairs])


def _target_files(targets_dir: Path, pairs: list) -> list[Path]:
    """``targets_dir/<target>``; a target named without extension (pairs from stems) is found as .jpg/.png."""
    paths = []
    for _, target in pairs:
        path = targets_dir / target
        if not path.is_file() and not Path(target).suffix:
            for ext in (".jpg", ".png", ".jpeg"):
                if (targets_dir / (target + ext)).is_file():
                    path = targets_dir / (target + ext)
                    break
        paths.append(path)
    return paths


def _resolve_metrics(protocol: Protocol, metrics: Optional[Sequence[str]]) -> tuple[list, bool]:
    if metrics is None:
        return list(protocol.default_metrics), False
    names = [m.strip().lower().replace("-", "_") for m in metrics if m.strip()]
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown:
        hints = [difflib.get_close_matches(m, ALL_METRICS, n=1, cutoff=0.4) for m in unknown]
        nearest = "; ".join(f"did you mean {h[0]!r} for {m!r}?" for m, h in zip(unknown, hints) if h)
        raise ValueError(f"unknown metric(s) {unknown}{'; ' + nearest if nearest else ''}; "
                         f"available: {list(ALL_METRICS)}")
    return list(dict.fromkeys(names)), True


def evaluate_folder(
    protocol: str,
    generated_dir: Union[str, Path],
    targets_dir: Union[str, Path, None] = None,
    pairs_csv: Union[str, Path, None] = None,
    annotations_csv: Union[str, Path, None] = None,
    metrics: Optional[Sequence[str]] = None,
    jpeg_roundtrip: Optional[bool] = None,
    detected_keypoints: Union[str, Path, None] = None,
    real_dir: Union[str, Path, None] = None,
    weights: Union[MetricWeights, dict, None] = None,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    cache_dir: Union[str, Path, None] = None,
    layout: Optional[str] = None,
    panel: Optional[int] = None,
    file_order: str = "sorted",
    pose_weights: Union[str, Path, None] = None,
    detections_csv: Union[str, Path, None] = None,
    log: Optional[Callable[[str], None]] = print,
) -> dict:
    """Compute the preset's metrics (or ``metrics``) for a folder of generated images.

    Returns ``{'protocol', 'num_pairs', 'jpeg_roundtrip', <metric>: value ..., 'skipped': {metric:
    reason}, 'details': {...}}``. ``jpeg_roundtrip=None`` follows the preset; when on, targets get
    the released pipeline's 8-bit conversion and a JPEG q75 round trip, generated PNGs the JPEG
    round trip, generated JPEGs are used as they are (they already are step 1's output). ``annotations_csv``
    (target keypoints) enables the mask metrics and PCKh; ``detected_keypoints`` (keypoints detected
    on the generated images, annotation format, rows named after the generated files) enables PCKh;
    ``real_dir`` (real images) enables FID. ``weights``: :class:`MetricWeights` or a dict of its fields.

    ``layout`` / ``panel`` / ``file_order``: see :mod:`xinggan.metrics.layouts` (``layout=None``
    infers it from the names). ``targets_dir=None`` is allowed for strips (the target is their
    panel 2); ``pairs_csv=None`` takes the pairs from the file names. ``pose_weights``: an OpenPose
    body weights file (``pose_estimator.h5`` or ``body_pose_model.pth``) to detect the generated
    images' keypoints for PCKh; ``detections_csv`` writes those detections (annotation format).
    ``log`` receives the one-line summary of the matched layout (``None``: silent).
    """
    preset = get_protocol(protocol)
    requested, explicit = _resolve_metrics(preset, metrics)
    roundtrip = preset.jpeg_roundtrip if jpeg_roundtrip is None else bool(jpeg_roundtrip)
    if isinstance(weights, dict):
        weights = MetricWeights(**weights)
    weights = weights or MetricWeights()
    device = torch.device(device)
    generated_dir = Path(generated_dir)

    listed = None
    if pairs_csv is not None:
        listed = read_pairs(pairs_csv)
        if not listed:
            raise EvaluationInputError(f"{pairs_csv}: no pairs")
    try:
        found = resolve_results(generated_dir, listed, pairs_csv, layout=layout, panel=panel,
                                image_width=preset.image_size[1] if preset.image_size else None,
                                file_order=file_order)
    except LayoutError as error:
        raise EvaluationInputError(str(error)) from None
    pairs, generated = found.pairs, found.generated
    if log is not None:
        log(found.summary(generated_dir))
    if targets_dir is not None:
        targets = _target_files(Path(targets_dir), pairs)
        targets_from_strips = False
    elif found.strip_targets is not None:
        targets, targets_from_strips = found.strip_targets, True
    else:
        raise EvaluationInputError(f"{generated_dir}: layout '{found.layout.name}' holds the generated images "
                                   f"only; pass the folder of target images (--targets)")
    height, width = _check_images(generated, targets, preset)

    skipped: dict[str, str] = {}

    def unavailable(metric: str, reason: str) -> None:
        if explicit:
            raise MetricUnavailable(f"metric {metric!r} (preset {preset.name}) cannot run: {reason}")
        skipped[metric] = reason

    # Keypoints.
    target_kp = None
    if any(m in requested for m in _MASK_METRICS + ("pckh",)):
        if annotations_csv is None:
            for m in [m for m in requested if m in _MASK_METRICS + ("pckh",)]:
                unavailable(m, "needs the target keypoints: pass annotations_csv (--annotations) in the "
                               "annotation format (name: [y...]: [x...])")
        else:
            target_kp = _target_keypoints(annotations_csv, pairs)
    detections = detector = None
    if "pckh" in requested and "pckh" not in skipped:
        if detected_keypoints is not None:
            detections = _detections_by_pair(detected_keypoints, pairs, generated)
        elif pose_weights is not None:
            from ..keypoints import DetectorUnavailable, build_detector

            try:
                detector = build_detector("openpose", weights=str(pose_weights), device=device)
            except DetectorUnavailable as error:
                unavailable("pckh", str(error))
        else:
            unavailable("pckh", "needs keypoints of the generated images: pass the OpenPose body weights "
                                "(pose_weights / --pose-weights / eval.pose_weights: PATN's Keras "
                                "pose_estimator.h5 or the PyTorch conversion body_pose_model.pth), or a CSV "
                                "of detections (--detected-keypoints / eval.detected_keypoints)")
    real_paths: list[Path] = []
    if "fid" in requested and real_dir is None:
        unavailable("fid", "needs a folder of real images for the reference statistics: pass real_dir (--real)")
    elif "fid" in requested:
        real_paths = _image_files(Path(real_dir)) if Path(real_dir).is_dir() else []
        if len(real_paths) < 2:
            raise EvaluationInputError(f"real images folder {real_dir} does not exist or has fewer than 2 images")
    for m in ("is", "mask_is"):
        if m in requested and m not in skipped and len(pairs) < 10:
            unavailable(m, f"needs at least 10 images for its 10 splits, got {len(pairs)}")

    # Networks.
    inception = tv_inception = lpips_net = None
    tf_features = []
    if any(m in requested and m not in skipped for m in ("is", "mask_is")):
        tf_features.append("logits_unbiased")
    if "fid" in requested and "fid" not in skipped and preset.fid_network == "tf-inception":
        tf_features.append("2048")
    if tf_features:
        try:
            inception = TFInception(tuple(tf_features), weights.inception, weights.allow_download).to(device)
        except WeightsUnavailable as error:
            for m in ("is", "mask_is", "fid"):
                if m in requested and m not in skipped and (m != "fid" or "2048" in tf_features):
                    unavailable(m, str(error))
    if "fid" in requested and "fid" not in skipped and preset.fid_network == "torchvision":
        try:
            tv_inception = TorchvisionInception(weights.torchvision_inception, weights.allow_download).to(device)
        except WeightsUnavailable as error:
            unavailable("fid", str(error))
    if any(m in requested and m not in skipped for m in ("lpips", "mask_lpips")):
        try:
            lpips_net = LPIPSAlex(weights.alexnet, allow_download=weights.allow_download).to(device)
        except WeightsUnavailable as error:
            for m in ("lpips", "mask_lpips"):
                if m in requested and m not in skipped:
                    unavailable(m, str(error))
    active = [m for m in requested if m not in skipped]

    def fid_features(images_u8: torch.Tensor) -> torch.Tensor:
        if tv_inception is not None:
            return tv_inception(images_u8)
        return inception(images_u8)["2048"]

    # Stream the pairs.
    # Preallocated result arrays: keeping many small tensors alive between the large per-batch
    # buffers fragments the heap and grows memory with the number of pairs.
    per_pair = {m: np.empty(len(pairs)) for m in ("ssim", "mask_ssim", "lpips", "mask_lpips", "psnr", "l1")
                if m in active}
    logits = {m: np.empty((len(pairs), 1008), dtype=np.float32) for m in ("is", "mask_is") if m in active}
    fake_stats = RunningStatistics() if "fid" in active else None
    need_masks = any(m in active for m in _MASK_METRICS)
    image_metrics = [m for m in active if m != "pckh"]
    detect = "pckh" in active and detections is None
    if detect:
        image_metrics.append("pckh")
        detections = []
    pad = preset.pad_columns
    target_names = [target for _, target in pairs]
    mask_cache = PoseMaskCache(height, width)
    padded_mask_cache = PoseMaskCache(height, width + 2 * pad, shift_x=pad)
    from tqdm import tqdm

    starts = range(0, len(pairs), batch_size) if image_metrics else range(0)
    with torch.no_grad():
        for start in tqdm(starts, desc=f"evaluate [{preset.name}]", unit="batch", disable=not progress):
            stop = min(start + batch_size, len(pairs))
            decoded: dict = {}  # a strip is decoded once for its target and generated panels
            gen = _load_rgb(generated[start:stop], decoded)
            tgt = _load_rgb(targets[start:stop], decoded)
            if roundtrip:  # step 1 of the PATN protocol (see protocols.py)
                if not targets_from_strips:  # strip panels already are step 1's output
                    tgt = roundtrip_images(released_8bit(tgt))
                lossless = [i for i, ref in enumerate(generated[start:stop])
                            if ref.panel is None and ref.path.suffix.lower() not in JPEG_SUFFIXES]
                if lossless:
                    gen[lossless] = roundtrip_images(gen[lossless])
            if detect:  # the released crop step re-saved each generated image as JPEG
                seen = roundtrip_images(gen) if (roundtrip or found.panels > 1) else gen
                detections.extend(detector.detect(image) for image in seen)
            gen_t, tgt_t = _to_tensor(gen, device), _to_tensor(tgt, device)
            gen_pad = _to_tensor(pad_white_columns(gen, pad), device) if pad else gen_t
            tgt_pad = _to_tensor(pad_white_columns(tgt, pad), device) if pad else tgt_t
            if need_masks:
                names, kp = target_names[start:stop], target_kp[start:stop]
                masks = torch.from_numpy(mask_cache(names, kp)).to(device)[:, None]
                masks_pad = torch.from_numpy(padded_mask_cache(names, kp)).to(device)[:, None] if pad else masks

            def ssim_input(x: torch.Tensor) -> torch.Tensor:
                return x if preset.ssim_input == "uint8" else x.to(torch.float32) / 255.0

            if "ssim" in per_pair:
                per_pair["ssim"][start:stop] = ssim(ssim_input(gen_pad), ssim_input(tgt_pad), preset.ssim).cpu().numpy()
            if "mask_ssim" in per_pair:
                masked = (ssim_input(gen_pad * masks_pad), ssim_input(tgt_pad * masks_pad))
                per_pair["mask_ssim"][start:stop] = ssim(*masked, preset.ssim).cpu().numpy()
            if "is" in logits:
                logits["is"][start:stop] = inception(gen_pad)["logits_unbiased"].numpy()
            if "mask_is" in logits:
                logits["mask_is"][start:stop] = inception(gen_pad * masks_pad)["logits_unbiased"].numpy()
            if fake_stats is not None:
                fake_stats.add(fid_features(gen_t))
            if "lpips" in per_pair or "mask_lpips" in per_pair:
                gen_s, tgt_s = to_signed_unit(gen_t), to_signed_unit(tgt_t)
                if "lpips" in per_pair:
                    per_pair["lpips"][start:stop] = lpips_net(gen_s, tgt_s).numpy()
                if "mask_lpips" in per_pair:
                    per_pair["mask_lpips"][start:stop] = lpips_net(gen_s * masks, tgt_s * masks).numpy()
            if "psnr" in per_pair:
                unit = (gen_t.to(torch.float32) / 255.0, tgt_t.to(torch.float32) / 255.0)
                per_pair["psnr"][start:stop] = psnr(*unit).cpu().numpy()
            if "l1" in per_pair:
                per_pair["l1"][start:stop] = l1_distance(to_signed_unit(gen_t), to_signed_unit(tgt_t)).cpu().numpy()

    results: dict = {"protocol": preset.name, "num_pairs": len(pairs), "jpeg_roundtrip": roundtrip,
                     "layout": found.layout.name}
    details: dict = {"image_size": [height, width], "dataset": DATASET_SIZES.get((height, width), "unknown"),
                     "generated_dir": str(generated_dir), "panels": found.panels,
                     "generated_panel": generated[0].panel,
                     "targets": "strip panel 2" if targets_from_strips else str(targets_dir),
                     "pairs": "file names" if found.pairs_from_files else str(pairs_csv),
                     "file_order": file_order if found.pairs_from_files else "pairs CSV"}
    for metric, scores in per_pair.items():
        results[metric] = float(scores.mean())
    for metric, table in logits.items():
        mean, std = inception_score_from_logits(table)
        results[metric], results[f"{metric}_std"] = mean, std
    if fake_stats is not None:
        real_height, real_width = _image_size(real_paths[0])

        def extract(paths: Sequence[Path]) -> torch.Tensor:
            images = _load_rgb(paths)
            if images.shape[1:3] != (real_height, real_width):
                raise EvaluationInputError(f"{real_dir}: real images have different sizes "
                                           f"(first {real_paths[0].name} is {real_height}x{real_width})")
            if roundtrip:
                images = roundtrip_images(released_8bit(images))
            return fid_features(_to_tensor(images, device))

        mu_real, sigma_real = real_statistics(real_paths, preset.name, preset.fid_network,
                                              (real_height, real_width), extract, batch_size,
                                              cache_dir, progress)
        mu_fake, sigma_fake = fake_stats.statistics()
        results["fid"] = frechet_distance(mu_fake, sigma_fake, mu_real, sigma_real)
        details["fid_real_images"] = len(real_paths)
        details["fid_network"] = preset.fid_network
    if "pckh" in active:
        if detect:
            details["pckh_detector"] = f"openpose ({Path(pose_weights).name})"
            if detections_csv is not None:
                write_annotations(detections_csv, {ref.name: kp for ref, kp in zip(generated, detections)})
                details["pckh_detections"] = str(detections_csv)
        scored = pckh(detections, target_kp)
        results["pckh"] = scored["pckh"]
        details["pckh"] = {k: v for k, v in scored.items() if k != "pckh"}
    if "ssim" in active or "mask_ssim" in active:
        details["ssim_settings"] = preset.ssim.name
    results["skipped"] = skipped
    results["details"] = details
    return results


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.2f}"


def format_table(results: dict) -> str:
    """Markdown table: the papers' reported numbers and ours, preset name beside every number."""
    name = results["protocol"]
    preset = get_protocol(name)
    dataset = results.get("details", {}).get("dataset")
    paper = [(method, values) for method, paper_dataset, values in PAPER_RESULTS.get(name, [])
             if dataset in (None, paper_dataset)]
    shown = set(preset.default_metrics) | {m for m in ALL_METRICS if m in results}
    columns = [m for m in TABLE_ORDER if m in shown]
    lines = ["| method | " + " | ".join(METRIC_LABELS[m] for m in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for method, values in paper:
        cells = [f"{values[m]:g} ({name})" if m in values else "–" for m in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    cells = [f"{_fmt(results[m])} ({name})" if m in results else "skipped" if m in results.get("skipped", {})
             else "–" for m in columns]
    lines.append("| ours | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_metrics(results: dict, out_json: Union[str, Path], out_md: Union[str, Path, None] = None) -> None:
    """Write ``metrics.json`` and, when ``out_md`` is given, the ``metrics.md`` table."""
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    if out_md is None:
        return
    preset = get_protocol(results["protocol"])
    dataset = results.get("details", {}).get("dataset", "unknown")
    text = [f"# Evaluation: preset `{preset.name}` ({dataset})", "",
            f"{preset.description}.", "",
            f"{results['num_pairs']} pairs; JPEG round trip {'on' if results.get('jpeg_roundtrip') else 'off'}."
            + (f" SSIM: {settings}." if (settings := results.get("details", {}).get("ssim_settings")) else ""),
            "", format_table(results), "",
            "Rows marked (paper) are the values reported in the papers' tables (listed in "
            "docs/data_and_metrics.md), not recomputed here; the name in parentheses is the preset (protocol) each "
            "number belongs to."]
    if results.get("skipped"):
        text += ["", "Skipped metrics:"]
        text += [f"- {METRIC_LABELS.get(m, m)}: {reason}" for m, reason in results["skipped"].items()]
    Path(out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(out_md).write_text("\n".join(text) + "\n", encoding="utf-8")


def report_missing_metrics(results: dict, allow_missing: bool, metrics_json, how_to_allow: str) -> bool:
    """Print each metric of the preset that could not run (a note when ``allow_missing``, else an
    error naming what to provide and ``how_to_allow``); True when that makes the run a failure."""
    missing = results["skipped"]
    for metric, reason in missing.items():
        print(f"{'skipped' if allow_missing else 'error: cannot compute'} {metric}: {reason}",
              file=sys.stdout if allow_missing else sys.stderr)
    if missing and not allow_missing:
        print(f"error: {len(missing)} metric(s) of preset {results.get('protocol', '')} could not run "
              f"({', '.join(missing)}); the others are in {metrics_json}. Provide the files named "
              f"above, or {how_to_allow} to record them as skipped.", file=sys.stderr)
        return True
    return False
