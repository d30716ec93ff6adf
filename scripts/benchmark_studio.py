"""Time the studio's /repose answer, from request to image, for models of the real configs.

    python scripts/benchmark_studio.py [--configs configs/market.yaml configs/deepfashion.yaml]
                                       [--repeats 10]

Each config's generator, with random weights (the time does not depend on their values), is
served by the studio in this process; a gradio_client call sends a toy photo drawn at the
model's size with its keypoints and a target pose, and waits for the image and the panel. No
detector runs (the keypoints are given). Prints the median and the slowest of --repeats calls
after one warm-up call, and the machine's load average before and after (other jobs slow it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from gradio_client import Client, handle_file

from studio import THEME, Studio, build_page, random_checkpoint
from xinggan.config import load_config
from xinggan.data.annotations import read_annotations
from xinggan.prep.toy import make_toy_dataset
from xinggan.repose import load_model
from xinggan.runtime import machine


def time_config(config: str, repeats: int, tmp: Path) -> tuple[float, float]:
    """(median, slowest) seconds of one /repose call for the model of ``config``."""
    cfg = load_config(config, [f"data.root={tmp}/none"])
    h, w = cfg.data.height, cfg.data.width
    generator, cfg = load_model(random_checkpoint(cfg, tmp / f"{h}x{w}.pt"))
    toy = tmp / f"toy{h}x{w}"
    make_toy_dataset(toy, identities=1, test_identities=1, poses=2, test_pairs=1, height=h, width=w)
    rows = read_annotations(toy / "market-annotation-test.csv")
    (source, source_kp), (_, target_kp) = sorted(rows.items())[:2]
    page = build_page(Studio(generator, cfg, gallery=[]))
    _, url, _ = page.launch(prevent_thread_lock=True, theme=THEME, quiet=True)
    try:
        client = Client(url, verbose=False)
        args = (handle_file(str(toy / "test" / source)), json.dumps(source_kp.tolist()),
                json.dumps(target_kp.tolist()))
        client.predict(*args, api_name="/repose")  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            client.predict(*args, api_name="/repose")
            times.append(time.perf_counter() - start)
    finally:
        page.close()
    return statistics.median(times), max(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["configs/market.yaml", "configs/deepfashion.yaml"])
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads, torch {info['torch']}")
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            load = os.getloadavg()[0]
            median, slowest = time_config(config, args.repeats, Path(tmp))
            print(f"{config}: median {median:.3f} s, slowest {slowest:.3f} s over {args.repeats} calls "
                  f"(load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
