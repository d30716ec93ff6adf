"""test.py end to end on toy data: generate every pair in CSV order, score, write reports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xinggan.checkpoint import save_checkpoint
from xinggan.config import load_config
from xinggan.data import read_pairs
from xinggan.models import build_generator
from xinggan.prep.toy import make_toy_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    """Toy data and a checkpoint of a narrow, untrained generator with its config (all test.py reads)."""
    root = tmp_path_factory.mktemp("toy_testpy")
    make_toy_dataset(root / "data", seed=5, identities=2, test_identities=2, poses=3,
                     test_pairs=5, height=128, width=64)
    sets = [f"data.root={root / 'data'}", "data.num_workers=0", "data.height=128",
            "data.width=64", "data.heatmap_sigma=6", "eval.protocol=patn-market",
            "model.generator.ngf=8", "model.generator.n_blocks=1",
            "model.generator.num_candidates=2", "eval.batch_size=2"]
    cfg = load_config(REPO / "configs" / "toy.yaml", sets)
    torch.manual_seed(0)
    checkpoint = root / "generator.pt"
    save_checkpoint({"config": cfg.to_dict(), "generator": build_generator(cfg).state_dict()}, checkpoint)
    return root, checkpoint


def test_generate_and_score(toy_checkpoint, tmp_path):
    root, ckpt = toy_checkpoint
    out = tmp_path / "res"
    run = subprocess.run([sys.executable, "test.py", "--checkpoint", str(ckpt), "--out", str(out),
                          "--device", "cpu", "--no-progress"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    pairs = read_pairs(root / "data" / "market-pairs-test.csv")
    names = sorted(p.name for p in (out / "images").iterdir())
    expected = sorted(f"{Path(a).stem}___{Path(b).stem}.png" for a, b in pairs)
    assert names == expected
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "patn-market" and metrics["num_pairs"] == len(pairs)
    for key in ("ssim", "mask_ssim", "l1"):  # the toy config's metrics
        assert 0 <= metrics[key] <= 2, key
    assert "patn-market" in (out / "metrics.md").read_text()
    assert (out / "grid.png").is_file()


def test_default_metrics_that_cannot_run_fail_after_writing_the_others(toy_checkpoint, tmp_path):
    """With the protocol's full list (eval.metrics empty), IS needs Inception weights and PCKh
    keypoints, which this machine does not have: test.py writes the metrics that ran, names what
    is missing and exits non-zero; eval.allow_missing_metrics=true records them as skipped."""
    _, ckpt = toy_checkpoint
    out = tmp_path / "res"
    common = [sys.executable, "test.py", "--checkpoint", str(ckpt), "--out", str(out), "--set", "eval.metrics=[]",
              "--device", "cpu", "--no-progress", "--set", "eval.max_pairs=2"]
    run = subprocess.run(common, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_pairs"] == 2
    assert "ssim" in metrics and "mask_ssim" in metrics
    assert {"is", "mask_is", "pckh"} <= set(metrics["skipped"])
    assert "pose_estimator.h5" in run.stderr and "could not run" in run.stderr
    assert "eval.allow_missing_metrics" in run.stderr

    allowed = subprocess.run(common + ["--skip-generation", "--set", "eval.allow_missing_metrics=true"],
                             cwd=REPO, capture_output=True, text=True, timeout=600)
    assert allowed.returncode == 0, allowed.stderr
    assert "skipped pckh" in allowed.stdout


def test_misspelt_protocol_is_a_config_error_before_generation(toy_checkpoint, tmp_path):
    _, ckpt = toy_checkpoint
    out = tmp_path / "res"
    run = subprocess.run([sys.executable, "test.py", "--checkpoint", str(ckpt), "--out", str(out),
                          "--set", "eval.protocol=patn-markt", "--device", "cpu", "--no-progress"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert "eval.protocol" in run.stderr and "did you mean 'patn-market'" in run.stderr
    assert not (out / "images").exists()  # nothing was generated
