"""The benchmark suite's quick mode runs and writes its JSON and Markdown reports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_reports(tmp_path):
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, "scripts/benchmark.py", "--quick", "--no-memory",
                          "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["quick"] and results["machine"]["torch"]
    rows = results["rows"]
    assert [r["attention"] for r in rows] == ["auto", "sdpa"]
    for row in rows:
        assert "error" not in row, row
        assert row["g_eval"]["median_s"] > 0 and row["g_train"]["median_s"] > 0
        assert row["g_eval"]["min_s"] <= row["g_eval"]["median_s"] <= row["g_eval"]["max_s"]
        assert row["reference"] == {"g_eval": 0.238, "g_train": 0.850, "peak_gb": 0.50}
    assert rows[0]["iteration"]["images_per_s"] > 0
    released = rows[0]["released"]  # the side-by-side literal released forward
    assert released["g_eval"]["median_s"] > 0 and released["g_train"]["median_s"] > 0
    assert "Side by side with the released forward pass" in out.with_suffix(".md").read_text()
    assert "| market | xinggan | 1 |" in out.with_suffix(".md").read_text()
