#!/usr/bin/env python
r"""Score a folder of generated images under an evaluation preset and write metrics.json / metrics.md.

    python scripts/evaluate.py --protocol patn-market --generated results/images \
        --targets market_data/test --pairs market_data/market-pairs-test.csv \
        --annotations market_data/market-annotation-test.csv --out results/metrics.json

Presets: patn-market, patn-deepfashion (the XingGAN paper's protocol), gfla (FID/LPIPS/SSIM-51/PSNR).
The generated image of pair (a, b) is <stem a>___<stem b>.png (or .jpg). See xinggan/metrics/evaluate.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xinggan.metrics.evaluate import (EvaluationInputError, MetricUnavailable, evaluate_folder,  # noqa: E402
                                      format_table, write_metrics)
from xinggan.metrics.protocols import ALL_METRICS, PROTOCOLS  # noqa: E402
from xinggan.metrics.weights import MetricWeights  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS), help="evaluation preset")
    parser.add_argument("--generated", required=True, help="folder of generated images <a>___<b>.png|jpg")
    parser.add_argument("--targets", required=True, help="folder of target (ground-truth) images")
    parser.add_argument("--pairs", required=True, help="pairs CSV (header from,to)")
    parser.add_argument("--annotations", help="target keypoints CSV (for mask metrics and PCKh)")
    parser.add_argument("--metrics", help=f"comma-separated subset of {','.join(ALL_METRICS)} "
                                          "(default: the preset's; an explicit metric that cannot run is an error)")
    roundtrip = parser.add_mutually_exclusive_group()
    roundtrip.add_argument("--jpeg-roundtrip", dest="jpeg_roundtrip", action="store_true", default=None,
                           help="JPEG q75 round trip of generated and target images (default for patn presets)")
    roundtrip.add_argument("--no-jpeg-roundtrip", dest="jpeg_roundtrip", action="store_false")
    parser.add_argument("--detected-keypoints", help="keypoints detected on the generated images (annotation CSV)")
    parser.add_argument("--real", help="folder of real images for FID statistics (cached)")
    parser.add_argument("--inception-weights", help="local Inception weights file (TF-ported for patn presets, "
                                                    "torchvision for gfla)")
    parser.add_argument("--lpips-weights", help="local torchvision AlexNet weights (alexnet-owt-7be5be79.pth)")
    parser.add_argument("--no-download", action="store_true", help="never try to download weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", required=True, help="metrics.json to write (metrics.md goes beside it)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    metrics = args.metrics.split(",") if args.metrics else None
    tv = args.protocol == "gfla"
    weights = MetricWeights(
        inception=None if tv else args.inception_weights,
        torchvision_inception=args.inception_weights if tv else None,
        alexnet=args.lpips_weights,
        allow_download=not args.no_download,
    )
    try:
        results = evaluate_folder(args.protocol, args.generated, args.targets, args.pairs,
                                  annotations_csv=args.annotations, metrics=metrics,
                                  jpeg_roundtrip=args.jpeg_roundtrip, detected_keypoints=args.detected_keypoints,
                                  real_dir=args.real, weights=weights, device=args.device,
                                  batch_size=args.batch_size)
    except (EvaluationInputError, MetricUnavailable, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out_json = Path(args.out)
    out_md = out_json.with_suffix(".md")
    write_metrics(results, out_json, out_md)
    print(format_table(results))
    for metric, reason in results["skipped"].items():
        print(f"skipped {metric}: {reason}")
    print(f"wrote {out_json} and {out_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
