"""Generate every test pair with a trained (or converted) checkpoint and score it.

    python test.py --checkpoint CKPT --out DIR [--config OVERLAY ...] [--set key=value ...]

The model is rebuilt from the config embedded in the checkpoint; overlays and ``--set`` may
change only the data and evaluation settings (``data.root``, ``eval.*``...).  Writes
``DIR/images/<from>___<to>.png``, ``DIR/metrics.json`` and ``DIR/metrics.md``.

A metric of the protocol that cannot run (missing Inception weights, no keypoints for PCKh...)
makes the command exit with status 1 after writing the others; ``eval.allow_missing_metrics=true``
records it as skipped instead. PCKh: ``eval.pose_weights`` (OpenPose body weights, detected here)
or ``eval.detected_keypoints`` (a CSV of detections).

The backend flags are those of training (:func:`xinggan.runtime.configure_backends`): on CUDA,
``train.tf32`` (default true) lets float32 products use TF32, for generation and for the
metric networks alike; ``--set train.tf32=false`` runs both in strict float32.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from xinggan.checkpoint import CheckpointError, load_checkpoint
from xinggan.config import ConfigError, config_from_dict, overlay_config
from xinggan.data import DataError, PairDataset, write_pairs
from xinggan.inference import generate_pairs, load_generator
from xinggan.metrics.evaluate import MetricUnavailable, evaluate_folder
from xinggan.metrics.inputs import EvaluationInputError
from xinggan.metrics.report import report_missing_metrics, write_metrics
from xinggan.metrics.weights import MetricWeights
from xinggan.precision import PrecisionError, resolve_amp
from xinggan.runtime import configure_backends, pick_device


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="our checkpoint (trained or converted)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", action="append", default=[],
                   help="YAML overlay for data/eval settings (e.g. another data.root)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override values: --set a.b=1 c.d=2 (or repeat --set)")
    p.add_argument("--device", default="auto")
    p.add_argument("--skip-generation", action="store_true",
                   help="score the images already in DIR/images")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def resolve_config(state: dict, overlays: list[str], overrides: list[str], source: str):
    """The checkpoint's config with data/eval overlays applied; the model may not change."""
    base = config_from_dict(state["config"], source=source)
    cfg = overlay_config(base, overlays, overrides, source=source)
    if cfg.model != base.model:
        raise ConfigError("model.*: test.py takes the model from the checkpoint; overlays and "
                          "--set may change data and eval settings only")
    return cfg


def score(cfg, dataset: PairDataset, out: Path, device: torch.device, progress: bool) -> dict:
    """``evaluate_folder`` of ``out/images`` with the config's eval settings (the pairs generated)."""
    root = Path(cfg.data.root)
    pairs_csv = Path(dataset.pairs_path)
    if cfg.eval.max_pairs:  # the very pairs generate_pairs ran (the dataset's first ones)
        pairs_csv = out / "pairs-evaluated.csv"
        write_pairs(pairs_csv, dataset.pairs[: cfg.eval.max_pairs])
    weights = MetricWeights.for_protocol(cfg.eval.protocol, inception=cfg.eval.inception_weights,
                                         lpips=cfg.eval.lpips_weights, pose=cfg.eval.pose_weights)
    return evaluate_folder(
        cfg.eval.protocol, out / "images", root / "test", pairs_csv, layout="stems",
        annotations_csv=Path(dataset.annotations_path), metrics=list(cfg.eval.metrics) or None,
        jpeg_roundtrip=cfg.eval.jpeg_roundtrip, detected_keypoints=cfg.eval.detected_keypoints or None,
        detections_csv=out / "keypoints-detected.csv" if cfg.eval.pose_weights else None,
        real_dir=root / "train" if (root / "train").is_dir() else None, weights=weights,
        device=str(device), batch_size=cfg.eval.batch_size, progress=progress)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    try:
        state = load_checkpoint(args.checkpoint)
        cfg = resolve_config(state, args.config, args.set, args.checkpoint)
        device = pick_device(args.device)
        if device.type == "cuda":  # the current GPU is the one asked for (cuda:N)
            torch.cuda.set_device(device)
        # the backend flags training runs with (train.tf32), without the deterministic mode
        backends = configure_backends(device, deterministic=False, tf32=cfg.train.tf32)
        print("backends: " + "; ".join(backends), flush=True)
        dataset = PairDataset.from_config(cfg.data, "test")
        images = out / "images"
        if not args.skip_generation:
            amp_dtype, precision = resolve_amp(cfg.eval.amp, device)
            print(f"eval.amp={cfg.eval.amp}: {precision}", flush=True)
            generator = load_generator(args.checkpoint, device=device, state=state)
            n = generate_pairs(generator, dataset, images, batch_size=cfg.eval.batch_size,
                               device=device, max_pairs=cfg.eval.max_pairs,
                               progress=not args.no_progress, grid_path=out / "grid.png",
                               num_workers=cfg.data.num_workers, amp_dtype=amp_dtype)
            print(f"wrote {n} images to {images}")
        results = score(cfg, dataset, out, device, progress=not args.no_progress)
        results["checkpoint"] = str(args.checkpoint)
        results["allow_missing_metrics"] = cfg.eval.allow_missing_metrics
        write_metrics(results, out / "metrics.json", out / "metrics.md")
    except (CheckpointError, ConfigError, DataError, MetricUnavailable, EvaluationInputError,
            PrecisionError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, (dict, list))}, indent=1))
    if report_missing_metrics(results, cfg.eval.allow_missing_metrics, out / "metrics.json",
                              "set eval.allow_missing_metrics=true"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
