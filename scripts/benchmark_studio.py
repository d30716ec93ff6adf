"""Time the studio's /repose answer, from request to image, for models of the real configs.

    python scripts/benchmark_studio.py [--configs configs/market.yaml configs/deepfashion.yaml]
                                       [--compile off on] [--repeats 10]

Each config's generator, with random weights (the time does not depend on their values), is
served by ``scripts/studio.py`` in its own process, as a user starts it: one server without and
one with its ``--compile`` flag, side by side. A gradio_client call from this process sends a
toy photo drawn at the model's size with its keypoints and a target pose, and waits for the
image and the panel; the calls alternate between the servers, so that both see the same
machine. No detector runs (the keypoints are given). Prints the median and the slowest of
--repeats calls after one warm-up call, each server's start-up time, and the load average.
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(checkpoint: Path, mode: str, log: Path, timeout: float = 600.0):
    """(process, URL, seconds to the first page) of the studio serving ``checkpoint``."""
    port = free_port()
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(SCRIPT), "--checkpoint", str(checkpoint),
                                 "--port", str(port), "--detector", "none"] + (["--compile"] if mode == "on" else []),
                                stdout=out, stderr=subprocess.STDOUT)
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


def log_of(tmp: Path, h: int, w: int, mode: str) -> list[str]:
    return (tmp / f"server-{h}x{w}-{mode}.log").read_text().splitlines()


def time_config(config: str, modes: list[str], repeats: int, tmp: Path) -> None:
    """Print the /repose times of the model of ``config`` served in each of ``modes``."""
    cfg = load_config(config, [f"data.root={tmp}/none"])
    h, w = cfg.data.height, cfg.data.width
    checkpoint = random_checkpoint(cfg, tmp / f"{h}x{w}.pt")
    toy = tmp / f"toy{h}x{w}"
    make_toy_dataset(toy, identities=1, test_identities=1, poses=2, test_pairs=1, height=h, width=w)
    rows = read_annotations(toy / "market-annotation-test.csv")
    (source, source_kp), (_, target_kp) = sorted(rows.items())[:2]
    load = os.getloadavg()[0]
    servers = {}
    try:
        for mode in modes:
            servers[mode] = serve(checkpoint, mode, tmp / f"server-{h}x{w}-{mode}.log")
        clients = {mode: Client(url, verbose=False) for mode, (_, url, _) in servers.items()}
        args = (handle_file(str(toy / "test" / source)), json.dumps(source_kp.tolist()),
                json.dumps(target_kp.tolist()))
        times = {mode: [] for mode in modes}
        for client in clients.values():
            client.predict(*args, api_name="/repose")  # warm-up
        for _ in range(repeats):
            for mode, client in clients.items():
                start = time.perf_counter()
                client.predict(*args, api_name="/repose")
                times[mode].append(time.perf_counter() - start)
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    for mode in modes:
        precision = next((line.split("; ")[-1] for line in log_of(tmp, h, w, mode) if "precision:" in line), "?")
        print(f"{config} ({h} x {w}), {precision}, compile {mode}: median {statistics.median(times[mode]):.3f} s, "
              f"slowest {max(times[mode]):.3f} s over {repeats} calls; page served {servers[mode][2]:.0f} s "
              f"after start (load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["configs/market.yaml", "configs/deepfashion.yaml"])
    p.add_argument("--compile", nargs="+", default=["off", "on"], choices=("off", "on"),
                   help="serve without (off) and/or with (on) the studio's --compile")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads, torch {info['torch']}")
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            time_config(config, args.compile, args.repeats, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
