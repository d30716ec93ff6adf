"""The CPU demo behind ``make demo``: toy data -> train -> generate -> evaluate -> results.

Draws the toy dataset unless it is there; trains ``configs/toy.yaml`` with ``train.py`` (resuming a
run that is there) in bf16 autocast where the CPU multiplies bf16 natively, else in float32
(``--amp`` overrides); generates and scores the toy test pairs with ``test.py``; scores copying the
source image as the answer; writes ``<out>/metrics.json``, ``<out>/metrics.md``, ``<out>/grid.png``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from xinggan.config import load_config
from xinggan.data import read_pairs
from xinggan.data.pairs import result_stem
from xinggan.metric_registry import METRICS, PROTOCOLS
from xinggan.metrics.evaluate import evaluate_folder
from xinggan.metrics.report import write_metrics
from xinggan.precision import resolve_amp
from xinggan.runtime import pick_device

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--toy-dir", default="datasets/toy")
    p.add_argument("--run-dir", default="runs/demo")
    p.add_argument("--out", default="results/demo")
    p.add_argument("--config", default="configs/toy.yaml")
    p.add_argument("--toy-identities", type=int, default=200,
                   help="training identities of the toy dataset (drawn at the config's size)")
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16"],
                   help="training precision (auto: bf16 on CPUs with native bf16 units)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra overrides for training (e.g. train.iterations=100)")
    return p.parse_args(argv)


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def draw_toy(toy: Path, cfg, config: str, identities: int) -> None:
    """Draw the toy dataset at the config's size unless it is there at that size."""
    first, size = min((toy / "test").glob("*.jpg"), default=None), (cfg.data.width, cfg.data.height)
    if (toy / "market-pairs-test.csv").is_file() and (first is None or _size(first) != size):
        print(f"{toy} holds toy images of another size than {config} "
              f"({cfg.data.height} x {cfg.data.width}): drawing it again", flush=True)
        shutil.rmtree(toy)
    if not (toy / "market-pairs-test.csv").is_file():
        run([sys.executable, "scripts/make_toy_dataset.py", "--out", str(toy), "--height", str(cfg.data.height),
             "--width", str(cfg.data.width), "--identities", str(identities)])


def copy_source_baseline(toy: Path, out: Path, cfg) -> dict:
    """Metrics of answering every test pair with its source image, scored as the model is."""
    base_dir = out / "copy_source_baseline" / "images"
    if base_dir.exists():
        shutil.rmtree(base_dir)
    base_dir.mkdir(parents=True)
    pairs_csv = toy / "market-pairs-test.csv"
    for a, b in read_pairs(pairs_csv):
        shutil.copyfile(toy / "test" / a, base_dir / f"{result_stem(a, b)}.jpg")
    baseline = evaluate_folder(cfg.eval.protocol, base_dir, toy / "test", pairs_csv,
                               annotations_csv=toy / "market-annotation-test.csv",
                               metrics=list(cfg.eval.metrics) or None, progress=False)
    write_metrics(baseline, out / "copy_source_baseline" / "metrics.json")
    return baseline


def write_results(out: Path, summary: dict, model: dict, baseline: dict, height: int) -> None:
    """``metrics.json``, ``metrics.md`` (also printed) and the enlarged ``grid.png``."""
    keys, amp = list(summary["model"]), summary["train_amp"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    if (out / "model" / "grid.png").is_file():  # enlarged so that small toy images read well
        with Image.open(out / "model" / "grid.png") as grid:
            scale = max(1, 192 // height)
            grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST).save(out / "grid.png")
    lines = [f"# Demo results ({summary['protocol']} protocol, {summary['num_pairs']} toy test pairs)",
             "", "| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {label} | " + " | ".join(f"{values[k]:.4f}" for k in keys) + " |"
              for label, values in (("XingGAN (toy config)", model), ("copy the source image", baseline))]
    lines += ["", f"Total time {summary['seconds']['total']} s "
             f"(training {summary['seconds']['train']} s, train.amp={amp}). Grid: source | source pose | "
             "target pose | generated | target."]
    (out / "metrics.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    args = parse_args(argv)
    py, start = sys.executable, time.perf_counter()
    toy, run_dir, out = Path(args.toy_dir), Path(args.run_dir), Path(args.out)
    base = load_config(args.config, [f"data.root={toy}", *args.set])
    amp_dtype, line = resolve_amp(args.amp, pick_device(base.train.device))
    print(line, flush=True)
    amp = {None: "off", torch.bfloat16: "bf16"}[amp_dtype]
    sets = [f"data.root={toy}", f"train.amp={amp}", *args.set]
    cfg = load_config(args.config, sets)
    draw_toy(toy, cfg, args.config, args.toy_identities)
    t_data = time.perf_counter()

    ckpt = run_dir / "checkpoints" / "latest.pt"
    run([py, "train.py", "--config", args.config, "--run-dir", str(run_dir),
         *[a for s in sets for a in ("--set", s)], *(["--resume"] if ckpt.is_file() else [])])
    t_train = time.perf_counter()
    run([py, "test.py", "--checkpoint", str(ckpt), "--out", str(out / "model"),
         "--set", f"data.root={toy}", "--device", "cpu"])
    t_test = time.perf_counter()
    baseline = copy_source_baseline(toy, out, cfg)
    model = json.loads((out / "model" / "metrics.json").read_text())
    t_end = time.perf_counter()

    keys = [k for k in PROTOCOLS["toy"].default_metrics if k in model]  # what the summary compares
    summary = {
        "protocol": model.get("protocol"), "num_pairs": model.get("num_pairs"),
        "model": {k: model[k] for k in keys}, "copy_source_baseline": {k: baseline[k] for k in keys},
        "model_beats_baseline": {k: (model[k] > baseline[k]) if METRICS[k].better == "higher"
                                 else (model[k] < baseline[k]) for k in keys},
        "seconds": {"dataset": round(t_data - start, 1), "train": round(t_train - t_data, 1),
                    "generate_and_score": round(t_test - t_train, 1),
                    "baseline": round(t_end - t_test, 1), "total": round(t_end - start, 1)},
        "config": args.config, "overrides": sets, "train_amp": amp, "precision": line,
        "checkpoint": str(ckpt),
    }
    write_results(out, summary, model, baseline, cfg.data.height)
    return 0


if __name__ == "__main__":
    sys.exit(main())
