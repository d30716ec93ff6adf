#!/usr/bin/env python
r"""Score a folder of results under an evaluation protocol and write metrics.json / metrics.md.

Our own results (<from stem>___<to stem>.png) against the test images:

    python scripts/evaluate.py --protocol patn-market --generated results/market/images \
        --targets datasets/market/test --pairs datasets/market/market-pairs-test.csv \
        --annotations datasets/market/market-annotation-test.csv --out results/market/metrics.json

Results as PATN / XingGAN / BiGraphGAN released them (5-panel strips <from>.jpg___<to>.jpg_vis.jpg):
no --targets and no --pairs are needed, the target is each strip's panel 2 and the pairs come from
the file names, exactly as the released getMetrics scripts scored them:

    python scripts/evaluate.py --protocol patn-market --generated xinggan_market_results/ \
        --annotations datasets/market/market-annotation-test.csv --pose-weights pose_estimator.h5 \
        --out xinggan_market.json

The layout of the folder is recognised from the file names and printed; --layout and --panel
settle what cannot be inferred. A metric of the protocol that cannot run here (missing weights,
keypoints...) makes the command exit with status 1 after writing the metrics that did run;
--allow-missing records it as skipped and exits 0. Protocols: patn-market, patn-deepfashion (the
XingGAN paper's), gfla (FID/LPIPS/SSIM-51/PSNR), toy. See xinggan/metrics/evaluate.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xinggan.hints import closest
from xinggan.metric_registry import METRICS, PROTOCOLS
from xinggan.metrics.evaluate import MetricUnavailable, evaluate_folder
from xinggan.metrics.inputs import EvaluationInputError
from xinggan.metrics.layouts import LAYOUTS
from xinggan.metrics.report import format_table, report_missing_metrics, write_metrics
from xinggan.metrics.weights import MetricWeights

EXIT_ERROR = 2    # bad input: nothing was scored
EXIT_MISSING = 1  # a metric of the protocol could not run; the others were written


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--protocol", required=True, help=f"evaluation protocol: {', '.join(sorted(PROTOCOLS))}")
    parser.add_argument("--generated", required=True, help="folder of results (any layout, see --layout)")
    parser.add_argument("--targets", help="folder of target (ground-truth) images; optional for strips "
                                          "(their panel 2 is the target, as in the released scripts)")
    parser.add_argument("--pairs", help="pairs CSV (header from,to); without it the pairs come from the file names")
    parser.add_argument("--annotations", help="target keypoints CSV (for mask metrics and PCKh)")
    parser.add_argument("--layout", choices=sorted(LAYOUTS),
                        help="file naming of --generated when it cannot be inferred: " +
                             "; ".join(f"{k}: {v.example}" for k, v in LAYOUTS.items()))
    parser.add_argument("--panel", type=int, help="0-based panel of the generated image in strips "
                                                  "(default 4 for the 5-panel PATN/XingGAN strips)")
    parser.add_argument("--file-order", choices=("sorted", "listdir"), default="sorted",
                        help="order of the pairs taken from file names (decides the IS splits): sorted names "
                             "(default, the same on every machine) or os.listdir as the released scripts")
    parser.add_argument("--metrics", help=f"comma-separated subset of {','.join(METRICS)} "
                                          "(default: the protocol's; an explicit metric that cannot run is an error)")
    roundtrip = parser.add_mutually_exclusive_group()
    roundtrip.add_argument("--jpeg-roundtrip", dest="jpeg_roundtrip", action="store_true", default=None,
                           help="JPEG q75 round trip of generated and target images (default for the patn protocols)")
    roundtrip.add_argument("--no-jpeg-roundtrip", dest="jpeg_roundtrip", action="store_false")
    parser.add_argument("--detected-keypoints", help="keypoints detected on the generated images (annotation CSV)")
    parser.add_argument("--pose-weights", help="OpenPose body weights for PCKh: PATN's Keras pose_estimator.h5 "
                                               "or the PyTorch conversion body_pose_model.pth")
    parser.add_argument("--real", help="folder of real images for FID statistics (cached)")
    parser.add_argument("--inception-weights", help="local Inception weights file: the network of the protocol's FID "
                                                    "(TF-ported for the patn protocols and toy, "
                                                    "torchvision for gfla)")
    parser.add_argument("--lpips-weights", help="local torchvision AlexNet weights (alexnet-owt-7be5be79.pth)")
    parser.add_argument("--no-download", action="store_true", help="never try to download weights")
    parser.add_argument("--allow-missing", action="store_true",
                        help="a metric of the protocol that cannot run is recorded as skipped (exit 0) "
                             "instead of failing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", required=True, help="metrics.json to write (metrics.md goes beside it; "
                                                     "with --pose-weights also <out>-keypoints.csv)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.protocol not in PROTOCOLS:
        hint = closest(args.protocol, PROTOCOLS)
        nearest = f"did you mean {hint!r}? " if hint else ""
        print(f"error: --protocol {args.protocol!r} is not an evaluation protocol; {nearest}choose one of "
              f"{', '.join(sorted(PROTOCOLS))}", file=sys.stderr)
        return EXIT_ERROR
    metrics = args.metrics.split(",") if args.metrics else None
    weights = MetricWeights.for_protocol(args.protocol, inception=args.inception_weights, lpips=args.lpips_weights,
                                         pose=args.pose_weights, allow_download=not args.no_download)
    out_json = Path(args.out)
    out_md = out_json.with_suffix(".md")
    keypoints_csv = out_json.with_name(out_json.stem + "-keypoints.csv") if args.pose_weights else None
    try:
        results = evaluate_folder(args.protocol, args.generated, args.targets, args.pairs,
                                  annotations_csv=args.annotations, metrics=metrics,
                                  jpeg_roundtrip=args.jpeg_roundtrip, detected_keypoints=args.detected_keypoints,
                                  real_dir=args.real, weights=weights, device=args.device,
                                  batch_size=args.batch_size, layout=args.layout, panel=args.panel,
                                  file_order=args.file_order, detections_csv=keypoints_csv)
    except (EvaluationInputError, MetricUnavailable, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    results["allow_missing_metrics"] = bool(args.allow_missing)
    write_metrics(results, out_json, out_md)
    print(format_table(results))
    print(f"wrote {out_json} and {out_md}")
    if report_missing_metrics(results, bool(args.allow_missing), out_json, "pass --allow-missing"):
        return EXIT_MISSING
    return 0


if __name__ == "__main__":
    sys.exit(main())
