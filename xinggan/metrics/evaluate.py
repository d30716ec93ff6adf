"""Score a folder of generated images against the targets under one evaluation preset.

``evaluate_folder`` pairs every (source, target) row of a pairs CSV with the generated file whose
stem is ``<source stem>___<target stem>`` (png or jpg) and the target image ``targets_dir/<target>``,
checks them all up front (missing or unreadable files, sizes), then streams the pairs in batches
through the preset's steps (:mod:`xinggan.metrics.protocols`) and metrics, keeping only per-pair
scores, Inception logits and running FID sums in memory. ``write_metrics`` writes
``metrics.json`` and a ``metrics.md`` table in the paper's layout with the papers' reported numbers
beside ours and the preset name beside every number.

A default metric that cannot run here (no weights, no keypoints, no real set) is listed in
``skipped`` with the reason; a metric asked for explicitly that cannot run raises
:class:`MetricUnavailable`, which says what to provide.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..data import read_annotations, read_pairs
from ..inference import PAIR_SEPARATOR, result_stem
from .fid import RunningStatistics, TorchvisionInception, frechet_distance, real_statistics
from .inception_score import TFInception, inception_score_from_logits
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

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
JPEG_SUFFIXES = (".jpg", ".jpeg")
_SHOW = 5  # how many offending files an error lists
_MASK_METRICS = ("mask_ssim", "mask_is", "mask_lpips")
_LABELS = {"ssim": "SSIM", "is": "IS", "mask_ssim": "mask-SSIM", "mask_is": "mask-IS", "pckh": "PCKh",
           "fid": "FID", "lpips": "LPIPS", "mask_lpips": "mask-LPIPS", "psnr": "PSNR", "l1": "L1"}


class MetricUnavailable(RuntimeError):
    """A metric asked for explicitly cannot be computed; the message says what to provide."""


class EvaluationInputError(ValueError):
    """Generated/target images or keypoint files are missing, unreadable or inconsistent."""


def _listing(items: Sequence[str], total: int) -> str:
    shown = "\n  ".join(items[:_SHOW])
    more = f"\n  ... and {total - _SHOW} more" if total > _SHOW else ""
    return f"\n  {shown}{more}"


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _strip_image_name(name: str) -> str:
    """``'x.jpg'`` -> ``'x'``; also drops the ``_vis`` suffix and extensions of older result names."""
    changed = True
    while changed:
        changed = False
        for suffix in IMAGE_EXTENSIONS + ("_vis",):
            if name.lower().endswith(suffix):
                name, changed = name[: -len(suffix)], True
    return name


def _match_generated(generated_dir: Path, pairs: list, pairs_csv) -> list[Path]:
    if not generated_dir.is_dir():
        raise EvaluationInputError(f"generated images folder {generated_dir} does not exist")
    by_stem: dict[str, Path] = {}
    for path in _image_files(generated_dir):
        if path.stem in by_stem:
            raise EvaluationInputError(f"{generated_dir}: two generated images for one pair: "
                                       f"{by_stem[path.stem].name} and {path.name}")
        by_stem[path.stem] = path
    found, missing = [], []
    for line, (source, target) in enumerate(pairs, start=2):
        stem = result_stem(source, target)
        if stem in by_stem:
            found.append(by_stem[stem])
        else:
            missing.append(f"{stem}.png|.jpg  (pair {source},{target} on line {line} of {pairs_csv})")
    if missing:
        raise EvaluationInputError(f"{len(missing)} of {len(pairs)} generated images are missing in "
                                   f"{generated_dir}:" + _listing(missing, len(missing)))
    extra = sorted(set(by_stem) - {p.stem for p in found})
    if extra:
        warnings.warn(f"{len(extra)} image(s) in {generated_dir} belong to no pair of {pairs_csv} and are "
                      f"ignored:" + _listing([by_stem[s].name for s in extra], len(extra)), stacklevel=3)
    return found


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        width, height = image.size
    return height, width


def _check_images(generated: list[Path], targets: list[Path], protocol: Protocol) -> tuple[int, int]:
    """Every file readable, every target the size of its generated image (and of the preset)."""
    missing = [str(t) for t in targets if not t.is_file()]
    if missing:
        raise EvaluationInputError(f"{len(missing)} target image(s) are missing:" + _listing(missing, len(missing)))
    unreadable, mismatched = [], []
    sizes = {}
    for path in dict.fromkeys(generated + targets):
        try:
            sizes[path] = _image_size(path)
        except Exception as error:  # PIL raises several types for broken files
            unreadable.append(f"{path}: {type(error).__name__}: {error}")
    if unreadable:
        raise EvaluationInputError(f"{len(unreadable)} image file(s) cannot be read:" +
                                   _listing(unreadable, len(unreadable)))
    for gen, tgt in zip(generated, targets):
        gh, gw = sizes[gen]
        th, tw = sizes[tgt]
        if protocol.image_size is not None and (th, tw) != tuple(protocol.image_size):
            mismatched.append(f"target {tgt} is {th}x{tw}, preset {protocol.name} expects "
                              f"{protocol.image_size[0]}x{protocol.image_size[1]} (generated {gen.name} is {gh}x{gw})")
        elif (gh, gw) != (th, tw):
            mismatched.append(f"target {tgt} is {th}x{tw} but generated {gen} is {gh}x{gw}")
    if mismatched:
        raise EvaluationInputError(f"{len(mismatched)} pair(s) have images of the wrong size (HxW):" +
                                   _listing(mismatched, len(mismatched)))
    shapes = {sizes[t] for t in targets}
    if len(shapes) > 1:
        raise EvaluationInputError(f"targets have several sizes {sorted(shapes)}; a folder is scored at one size")
    return shapes.pop()


def _load_rgb(paths: Iterable[Path]) -> np.ndarray:
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
        except Exception as error:
            raise EvaluationInputError(f"{path}: cannot decode image ({type(error).__name__}: {error})") from None
    return np.stack(images)


def _to_tensor(images: np.ndarray, device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> uint8 (B, 3, H, W) on device."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)


def _detections_by_pair(detected_csv, pairs: list) -> list[np.ndarray]:
    """Detected keypoints per pair; rows are named after the generated images (any extension)."""
    table = read_annotations(detected_csv)
    by_pair = {}
    for name in table:
        parts = Path(name).name.split(PAIR_SEPARATOR)
        if len(parts) == 2:
            by_pair[(_strip_image_name(parts[0]), _strip_image_name(parts[1]))] = table[name]
    rows, missing = [], []
    for source, target in pairs:
        key = (_strip_image_name(source), _strip_image_name(target))
        if key in by_pair:
            rows.append(by_pair[key])
        else:
            missing.append(result_stem(source, target))
    if missing:
        raise EvaluationInputError(f"{detected_csv}: no detected keypoints for {len(missing)} of {len(pairs)} "
                                   f"generated images (rows are named after the generated files):" +
                                   _listing(missing, len(missing)))
    return rows


def _target_keypoints(annotations_csv, pairs: list) -> np.ndarray:
    table = read_annotations(annotations_csv)
    missing = sorted({t for _, t in pairs if t not in table})
    if missing:
        raise EvaluationInputError(f"{annotations_csv}: no keypoints for {len(missing)} target image(s):" +
                                   _listing(missing, len(missing)))
    return np.stack([table[t] for _, t in pairs])


def _resolve_metrics(protocol: Protocol, metrics: Optional[Sequence[str]]) -> tuple[list, bool]:
    if metrics is None:
        return list(protocol.default_metrics), False
    names = [m.strip().lower().replace("-", "_") for m in metrics if m.strip()]
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; available: {list(ALL_METRICS)}")
    return list(dict.fromkeys(names)), True


def evaluate_folder(
    protocol: str,
    generated_dir: Union[str, Path],
    targets_dir: Union[str, Path],
    pairs_csv: Union[str, Path],
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
) -> dict:
    """Compute the preset's metrics (or ``metrics``) for a folder of generated images.

    Returns ``{'protocol', 'num_pairs', 'jpeg_roundtrip', <metric>: value ..., 'skipped': {metric:
    reason}, 'details': {...}}``. ``jpeg_roundtrip=None`` follows the preset; when on, targets get
    the released pipeline's 8-bit conversion and a JPEG q75 round trip, generated PNGs the JPEG
    round trip, generated JPEGs are used as they are (they already are step 1's output). ``annotations_csv``
    (target keypoints) enables the mask metrics and PCKh; ``detected_keypoints`` (keypoints detected
    on the generated images, annotation format, rows named after the generated files) enables PCKh;
    ``real_dir`` (real images) enables FID. ``weights``: :class:`MetricWeights` or a dict of its fields.
    """
    preset = get_protocol(protocol)
    requested, explicit = _resolve_metrics(preset, metrics)
    roundtrip = preset.jpeg_roundtrip if jpeg_roundtrip is None else bool(jpeg_roundtrip)
    if isinstance(weights, dict):
        weights = MetricWeights(**weights)
    weights = weights or MetricWeights()
    device = torch.device(device)
    generated_dir, targets_dir = Path(generated_dir), Path(targets_dir)

    pairs = read_pairs(pairs_csv)
    if not pairs:
        raise EvaluationInputError(f"{pairs_csv}: no pairs")
    generated = _match_generated(generated_dir, pairs, pairs_csv)
    targets = [targets_dir / target for _, target in pairs]
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
    detections = None
    if "pckh" in requested and "pckh" not in skipped:
        if detected_keypoints is None:
            unavailable("pckh", "needs keypoints detected on the generated images: pass detected_keypoints "
                                "(--detected-keypoints), an annotation-format CSV with one row per generated image")
        else:
            detections = _detections_by_pair(detected_keypoints, pairs)
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
    pad = preset.pad_columns
    target_names = [target for _, target in pairs]
    mask_cache = PoseMaskCache(height, width)
    padded_mask_cache = PoseMaskCache(height, width + 2 * pad, shift_x=pad)
    from tqdm import tqdm

    starts = range(0, len(pairs), batch_size) if image_metrics else range(0)
    with torch.no_grad():
        for start in tqdm(starts, desc=f"evaluate [{preset.name}]", unit="batch", disable=not progress):
            stop = min(start + batch_size, len(pairs))
            gen = _load_rgb(generated[start:stop])
            tgt = _load_rgb(targets[start:stop])
            if roundtrip:  # step 1 of the PATN protocol (see protocols.py)
                tgt = roundtrip_images(released_8bit(tgt))
                lossless = [i for i, p in enumerate(generated[start:stop]) if p.suffix.lower() not in JPEG_SUFFIXES]
                if lossless:
                    gen[lossless] = roundtrip_images(gen[lossless])
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

    results: dict = {"protocol": preset.name, "num_pairs": len(pairs), "jpeg_roundtrip": roundtrip}
    details: dict = {"image_size": [height, width], "dataset": DATASET_SIZES.get((height, width), "unknown")}
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
    lines = ["| method | " + " | ".join(_LABELS[m] for m in columns) + " |",
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
            "Rows marked (paper) are the values reported in the papers' tables (as listed in the project's "
            "evaluation spec), not recomputed here; the name in parentheses is the preset (protocol) each "
            "number belongs to."]
    if results.get("skipped"):
        text += ["", "Skipped metrics:"]
        text += [f"- {_LABELS.get(m, m)}: {reason}" for m, reason in results["skipped"].items()]
    Path(out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(out_md).write_text("\n".join(text) + "\n", encoding="utf-8")
