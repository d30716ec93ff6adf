"""scripts/gpu_check.py without a GPU: the dry run from another folder, the report rewritten after
each part with the parts faked, the targets read from a benchmark report, the exit status."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import load_script

REPO = Path(__file__).resolve().parents[1]


def test_dry_run_from_another_folder(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--dry-run", "--out", "reports/x"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "dry run: ok" in out.stdout, out.stdout + out.stderr
    assert f"{REPO / 'reports' / 'x'}.md" in out.stdout and f"--out {REPO / 'reports' / 'x'}_benchmark" in out.stdout
    assert "-m cuda" in out.stdout and "--batches 32" in out.stdout and "market_gpu_busy >= 0.9" in out.stdout
    assert not any(tmp_path.iterdir()) and not (REPO / "reports").exists()


def bench_rows(peak_gb: float) -> dict:
    it = {"peak_memory_gb": peak_gb, "projected": {"hours": 4.0}}
    return {"rows": [{"dataset": d, "model": "xinggan", "batch": 32, "amp": "bf16", "attention": "auto",
                      "g_eval": {"images_per_s": 2000.0}, "iteration": it} for d in ("market", "deepfashion")]}


@pytest.mark.parametrize("peak_gb,busy,code", [(30.0, 0.95, 0), (41.0, 0.95, 1), (30.0, 0.5, 1)])
def test_parts_report_and_exit_status(tmp_path, monkeypatch, peak_gb, busy, code):
    gc, out, seen = load_script("gpu_check"), tmp_path / "report", []

    def fake_run(command, limit_s):
        if seen:  # the report of the parts before this one is on disk already
            assert json.loads(Path(f"{out}.json").read_text())["parts"]["tests"]["status"] == "passed"
        seen.append(command)
        if "scripts/benchmark.py" in command:
            Path(f"{out}_benchmark.json").write_text(json.dumps(bench_rows(peak_gb)))
        return {"status": "passed", "seconds": 1.0}

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "a GPU")
    monkeypatch.setattr(gc, "run", fake_run)
    monkeypatch.setattr(gc, "busy", lambda device: {"status": "passed", "busy": busy})
    assert gc.main(["--out", str(out)]) == code
    assert len(seen) == 2 and "-m" in seen[0] and "cuda" in seen[0]
    targets = {t["target"]: t["status"] for t in json.loads(Path(f"{out}.json").read_text())["targets"]}
    assert targets["deepfashion_train_peak_gb"] == ("met" if peak_gb < 40 else "missed")
    assert targets["market_gpu_busy"] == ("met" if busy >= 0.9 else "missed")
    assert ("FAILED" in Path(f"{out}.md").read_text()) == bool(code)


def test_targets_without_a_benchmark_report_are_not_measured(tmp_path):
    found = load_script("gpu_check").check_targets(tmp_path / "none.json")
    assert {t["status"] for t in found} == {"not measured"}
