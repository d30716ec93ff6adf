"""Time the studio's /repose answer, from request to image, for models of the real configs.

    python scripts/benchmark_studio.py [--configs configs/market.yaml configs/deepfashion.yaml]
                                       [--repeats 10]

Each config's generator, with random weights (the time does not depend on their values), is
served by ``scripts/studio.py`` in its own process, as a user starts it; a gradio_client call
from this process sends a toy photo drawn at the model's size with its keypoints and a target
pose, and waits for the image and the panel. No detector runs (the keypoints are given). Prints
the median and the slowest of --repeats calls after one warm-up call, the server's start-up
time, the machine's load average (other jobs slow it) and the precision the studio chose.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from gradio_client import Client, handle_file

from studio import random_checkpoint
from xinggan.config import load_config
from xinggan.data.annotations import read_annotations
from xinggan.prep.toy import make_toy_dataset
from xinggan.runtime import machine

SCRIPT = Path(__file__).resolve().parent / "studio.py"


def serve(checkpoint: Path, log: Path, timeout: float = 300.0):
    """(process, URL, seconds to the first page) of the studio serving ``checkpoint``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(SCRIPT), "--checkpoint", str(checkpoint),
                                 "--port", str(port), "--detector", "none"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return proc, url, time.perf_counter() - start
        except OSError:
            if proc.poll() is not None or time.perf_counter() - start > timeout:
                proc.kill()
                raise SystemExit(f"the studio did not serve {url}:\n{log.read_text()}")
            time.sleep(0.2)


def time_config(config: str, repeats: int, tmp: Path) -> str:
    """One line: the /repose times of the model of ``config``, served by the studio."""
    cfg = load_config(config, [f"data.root={tmp}/none"])
    h, w = cfg.data.height, cfg.data.width
    toy = tmp / f"toy{h}x{w}"
    make_toy_dataset(toy, identities=1, test_identities=1, poses=2, test_pairs=1, height=h, width=w)
    (source, source_kp), (_, target_kp) = sorted(read_annotations(toy / "market-annotation-test.csv").items())[:2]
    load, log = os.getloadavg()[0], tmp / f"server-{h}x{w}.log"
    proc, url, startup = serve(random_checkpoint(cfg, tmp / f"{h}x{w}.pt"), log)
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
        proc.terminate()
        proc.wait(timeout=30)
    precision = next((line.split("; ")[-1] for line in log.read_text().splitlines() if "precision:" in line), "?")
    return (f"{config} ({h} x {w}): median {statistics.median(times):.3f} s, slowest {max(times):.3f} s over "
            f"{repeats} calls; page served {startup:.0f} s after start; load average {load:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after; {precision}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["configs/market.yaml", "configs/deepfashion.yaml"])
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads, torch {info['torch']}")
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            print(time_config(config, args.repeats, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
