"""Time SSIM + mask-SSIM of Market-size pairs, batched, against the original scripts' per-pair scikit-image
loop (timed on --baseline-pairs, scaled), and each stage of scoring from files (--pipeline-pairs). Masks
from the real Market test keypoints where ../shared/data is present; ssim.json and ssim.md to --out-dir."""
import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from skimage.draw import disk, polygon
from skimage.metrics import structural_similarity
from skimage.morphology import dilation, erosion

from xinggan.bench import report
from xinggan.data import read_annotations, read_pairs
from xinggan.metric_registry import METRICS
from xinggan.metrics.inputs import load_rgb
from xinggan.metrics.mask import MASK_LIMBS, PoseMaskCache
from xinggan.metrics.preprocess import jpeg_roundtrip, released_8bit
from xinggan.metrics.ssim import PATN_SSIM, ssim
from xinggan.runtime import machine

REPO = Path(__file__).resolve().parents[1]
H, W = 128, 64
MARKET = REPO.parent / "shared" / "data" / "market"
SSIM_METRICS = [m for m in METRICS.values() if m.accumulator == "SSIMAccumulator"]  # ssim, mask_ssim


def image_pool(count: int, seed: int) -> np.ndarray:
    """uint8 (count, H, W, 3) natural-looking images: smooth fields, a band, noise."""
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.normal(size=(count, H, W, 3)), sigma=(0, 4, 4, 0))
    f = (f - f.min((1, 2, 3), keepdims=True)) / np.ptp(f, (1, 2, 3), keepdims=True) * 200 + 20
    f[:, H // 3:H // 2] += 25
    return np.clip(f + rng.normal(scale=6, size=f.shape), 0, 255).astype(np.uint8)


def target_keypoints(pairs: int, seed: int) -> tuple:
    """Target keypoints and names of each pair (names repeat: masks are cached per target), and their source."""
    if (MARKET / "market-pairs-test.csv").is_file():
        annotations = read_annotations(MARKET / "market-annotation-test.csv")
        names = [t for _, t in read_pairs(MARKET / "market-pairs-test.csv")]
        names = (names * -(-pairs // len(names)))[:pairs]
        return np.stack([annotations[n] for n in names]), names, "real Market test pairs (target keypoints)"
    rng = np.random.default_rng(seed)
    kp = np.stack([rng.integers(0, H, (pairs, 18)), rng.integers(0, W, (pairs, 18))], axis=2)
    kp[rng.random((pairs, 18)) < 0.2] = -1
    return kp, [f"synthetic{i}" for i in range(pairs)], "synthetic keypoints"


def baseline_mask(kp: np.ndarray) -> np.ndarray:
    """The released per-image mask recipe with scikit-image calls."""
    kp, mask = kp.astype(np.float64), np.zeros((H, W), dtype=bool)
    for a, b in MASK_LIMBS:
        length = np.linalg.norm(kp[a] - kp[b])
        if (kp[a] == -1).any() or (kp[b] == -1).any() or length == 0:
            continue
        normal = 4 * np.array([kp[b][1] - kp[a][1], kp[a][0] - kp[b][0]]) / length
        corners = np.array([kp[a] + normal, kp[a] - normal, kp[b] - normal, kp[b] + normal])
        mask[polygon(corners[:, 0], corners[:, 1], shape=(H, W))] = True
    for y, x in kp:
        if y != -1 and x != -1:
            mask[disk((y, x), 4, shape=(H, W))] = True
    return erosion(dilation(mask, np.ones((5, 5), bool)), np.ones((5, 5), bool))


def run_ours(pools, keypoints, names, pairs: int, batch: int, files=None) -> dict:
    """Seconds per stage over ``pairs`` pairs, from the in-memory pools or from ``files`` (gen, tgt)."""
    times, cache, clock = defaultdict(float), PoseMaskCache(H, W), time.perf_counter
    for start in range(0, pairs, batch):
        i = np.arange(start, min(start + batch, pairs))
        g, t = i % len(pools[0]), (7 * i + 3) % len(pools[1])
        t0 = clock()
        if files:
            gen, tgt = load_rgb([files[0][k] for k in g]), load_rgb([files[1][k] for k in t])
            times["decode"] += (t1 := clock()) - t0
            gen, tgt = jpeg_roundtrip(gen), jpeg_roundtrip(released_8bit(tgt))
            times["jpeg_roundtrip"] += clock() - t1
        else:
            gen, tgt = pools[0][g], pools[1][t]
        t2 = clock()
        masks = torch.from_numpy(cache([names[k] for k in i], keypoints[i]))[:, None]
        times["masks"] += clock() - t2
        gen, tgt = (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))) for x in (gen, tgt))
        for metric in SSIM_METRICS:
            t3 = clock()
            ssim(gen * masks, tgt * masks, PATN_SSIM) if metric.masked else ssim(gen, tgt, PATN_SSIM)
            times[metric.name] += clock() - t3
    return {**times, "total": sum(times.values())}


def run_baseline(pools, keypoints, pairs: int) -> float:
    """Seconds of the per-pair scikit-image loop (mask, SSIM, mask-SSIM)."""
    start = time.perf_counter()
    for i in range(pairs):
        gen, tgt, mask = pools[0][i % len(pools[0])], pools[1][(7 * i + 3) % len(pools[1])], baseline_mask(keypoints[i])
        for g, t in ((gen, tgt), (gen * mask[..., None], tgt * mask[..., None])):
            structural_similarity(t, g, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                  channel_axis=-1, data_range=float(g.max()) - float(g.min()))
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=12000)
    p.add_argument("--baseline-pairs", type=int, default=500, help="pairs timed for the per-pair baseline")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pipeline-pairs", type=int, default=2000, help="pairs for the stages from files (0: skip)")
    p.add_argument("--out-dir", default=str(REPO / "runs" / "benchmarks"), help="where ssim.json / ssim.md go")
    args = p.parse_args(argv)
    pools, n = (image_pool(256, seed=1), image_pool(256, seed=2)), min(args.baseline_pairs, args.pairs)
    keypoints, names, source = target_keypoints(args.pairs, seed=3)
    m = {**machine(), "logical_cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    run_ours(pools, keypoints, names, min(args.pairs, 2 * args.batch_size), args.batch_size)  # warm-up
    ours = run_ours(pools, keypoints, names, args.pairs, args.batch_size)
    baseline_s = run_baseline(pools, keypoints, n)
    stages = {}
    if args.pipeline_pairs:
        with tempfile.TemporaryDirectory() as tmp:
            files = [[Path(tmp, f"{side}{i}.{ext}") for i in range(len(pool))]
                     for side, ext, pool in zip(("gen", "tgt"), ("png", "jpg"), pools)]
            for image, path in zip((*pools[0], *pools[1]), (*files[0], *files[1])):
                Image.fromarray(image).save(path, quality=92)
            run_ours(pools, keypoints, names, min(args.pipeline_pairs, 128), args.batch_size, files)  # warm-up
            stages = run_ours(pools, keypoints, names, args.pipeline_pairs, args.batch_size, files)
    m["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    scale, extrapolated = args.pairs / max(1, args.pipeline_pairs), baseline_s * args.pairs / n
    result = {"pairs": args.pairs, "image_size": [H, W], "keypoints": source, "machine": m, "ours_seconds": ours,
              "batch_size": args.batch_size, "speedup": extrapolated / ours["total"],
              "baseline": {"timed_pairs": n, "seconds_timed": baseline_s, "seconds_extrapolated": extrapolated},
              "pipeline_pairs": args.pipeline_pairs, "pipeline_seconds": stages}
    lines = [f"# SSIM + mask-SSIM: {args.pairs} synthetic {H}x{W} pairs, masks from {source}", "",
             f"`python scripts/benchmark_ssim.py {' '.join(sys.argv[1:] if argv is None else argv)}` on {m['cpu']}, "
             f"torch {m['torch']} with {m['torch_threads']} threads; load average {m['load_average_before']} "
             f"before, {m['load_average_after']} after.", "",
             "| stage | ours, in memory (s) | ours, from files (s, scaled to all pairs) |", "|---|---|---|",
             *(f"| {k} | {ours.get(k, 0):.2f} | {stages.get(k, 0) * scale:.1f} |" for k in stages or ours), "",
             f"Per-pair scikit-image loop: {baseline_s:.2f} s for {n} pairs, **{extrapolated:.1f} s** scaled to "
             f"{args.pairs}: ours is **{result['speedup']:.1f}x** faster in memory. The stages from files add the "
             "per-image decoding and JPEG round trip that no SSIM implementation avoids."]
    print(report.write_pair(Path(args.out_dir).resolve() / "ssim", result, "\n".join(lines) + "\n")[1].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
