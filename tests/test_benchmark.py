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
    assert results["quick"] and results["machine"]["torch"] and results["complete"] is True
    rows = results["rows"]
    assert [r["attention"] for r in rows] == ["auto", "sdpa"]
    for row in rows:
        assert "error" not in row, row
        assert row["g_eval"]["median_s"] > 0 and row["g_train"]["median_s"] > 0
        assert row["g_eval"]["min_s"] <= row["g_eval"]["median_s"] <= row["g_eval"]["max_s"]
        assert row["reference"] == documented_reference_cost("Market-1501", 1)
    assert rows[0]["iteration"]["images_per_s"] > 0
    released = rows[0]["released"]  # the side-by-side literal released forward
    assert released["g_eval"]["median_s"] > 0 and released["g_train"]["median_s"] > 0
    assert "Side by side with the released forward pass" in out.with_suffix(".md").read_text()
    assert "| market | xinggan | 1 |" in out.with_suffix(".md").read_text()


def documented_reference_cost(dataset: str, batch: int) -> dict:
    """The released generator's cost as docs/architecture.md tabulates it ("Reference cost")."""
    text = (REPO / "docs" / "architecture.md").read_text()
    table = text[text.index("## Reference cost"):].split("\n\n")[2]
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0].startswith(dataset) and int(cells[1]) == batch:
            return {"g_eval": float(cells[2].split()[0]), "g_train": float(cells[3].split()[0]),
                    "peak_gb": float(cells[4].split()[0])}
    raise AssertionError(f"no {dataset} batch {batch} row in docs/architecture.md")


def _benchmark_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_script", REPO / "scripts/benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schedule_projection_and_gpu_sections_of_the_report():
    """The projected schedule hours (only at the config's batch size) and the CUDA-only report
    sections, rendered from a results dict shaped as a GPU run writes it."""
    bench = _benchmark_module()
    cfg = bench.load("configs/deepfashion.yaml", [])
    assert bench.schedule_projection(cfg, 1, 0.5) is None
    proj = bench.schedule_projection(cfg, cfg.train.batch_size, 0.5)
    # the released DeepFashion recipe: 200 + 100 epochs of 4,000 pairs at batch 32
    released_iterations = (200 + 100) * 4000 // 32
    assert proj == {"iterations": released_iterations, "hours": 0.5 * released_iterations / 3600}
    cell = {"median_s": 0.5, "min_s": 0.4, "max_s": 0.6, "images_per_s": 64.0}
    row = {"dataset": "deepfashion", "model": "xinggan", "batch": 32, "amp": "bf16",
           "attention": "auto", "g_eval": cell, "g_train": cell,
           "iteration": {**cell, "peak_memory_gb": 21.5, "projected": proj},
           "sdpa_kernels": [{"device": "cuda:0", "dtype": "torch.bfloat16", "q": [32, 1, 2816, 32],
                             "k": [32, 1, 2816, 32], "v": [32, 1, 2816, 256], "grad": True,
                             "kernels": ["efficient"]},
                            {"device": "cuda:0", "dtype": "torch.float32", "q": [1, 1, 8, 32],
                             "k": [1, 1, 8, 32], "v": [1, 1, 8, 256], "grad": False,
                             "kernels": []}]}
    md = bench.markdown({"machine": {"gpu": "a GPU", "torch": "x", "commit": "c"},
                         "rows": [row], "command": "python scripts/benchmark.py"})
    assert "| deepfashion | xinggan | 32 | bf16 | 0.500 | 64.0 | 21.5 | 37500 | 5.2 |" in md
    assert "| efficient |" in md and "| none: chunked |" in md
    cpu_md = bench.markdown({"machine": {"cpu": "a CPU", "torch_threads": 2, "torch": "x",
                                         "commit": "c"},
                             "rows": [{**row, "iteration": cell, "sdpa_kernels": []}]})
    assert "Full training schedule" not in cpu_md and "Fused SDPA" not in cpu_md


def test_amp_rows_are_timed_with_fp32_and_the_released_pass(tmp_path):
    """``--amp bf16,off`` on CPU: one bf16 and one fp32 row from the same interleaved run, the
    released pass beside the fp32 row, and the bf16 row's deviation from fp32."""
    out = tmp_path / "amp"
    run = subprocess.run([sys.executable, "scripts/benchmark.py", "--datasets", "toy",
                          "--models", "xinggan", "--batches", "1", "--amp", "bf16,off",
                          "--repeats", "1", "--warmup", "0", "--no-memory", "--no-iteration",
                          "--attention", "auto", "--deviation-pairs", "3", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(out.with_suffix(".json").read_text())
    rows = results["rows"]
    assert [(r["dataset"], r["amp"]) for r in rows] == [("toy", "bf16"), ("toy", "off")]
    bf16, fp32 = rows
    for row in rows:
        assert "error" not in row, row
        assert row["g_eval"]["runs"] == 1 and row["g_train"]["median_s"] > 0
    assert "released" in fp32 and "released" not in bf16
    dev = bf16["deviation"]
    assert dev["ssim_pairs"] == 3 and 0 < dev["ssim_vs_fp32_min"] <= dev["ssim_vs_fp32"] <= 1
    assert 0 <= dev["mean_abs"] <= dev["max_abs"] <= 2
    assert "deviation" not in fp32
    md = out.with_suffix(".md").read_text()
    assert "## Reduced precision beside fp32" in md and "| toy | xinggan | 1 | bf16 |" in md


def test_amp_section_of_the_report():
    bench = _benchmark_module()
    cell = lambda s: {"median_s": s, "min_s": s, "max_s": s, "images_per_s": 1 / s}  # noqa: E731
    base = {"dataset": "market", "model": "xinggan", "batch": 8, "attention": "auto"}
    fp32 = {**base, "amp": "off", "g_eval": cell(2.0), "g_train": cell(6.0),
            "iteration": cell(8.0), "released": {"g_eval": cell(2.5), "g_train": cell(7.5)}}
    bf16 = {**base, "amp": "bf16", "g_eval": cell(0.5), "g_train": cell(2.0),
            "iteration": cell(4.0), "deviation": {"max_abs": 0.047, "mean_abs": 0.0072,
                                                  "ssim_vs_fp32": 0.99, "ssim_vs_fp32_min": 0.98,
                                                  "ssim_pairs": 16}}
    lines = bench.amp_section([bf16, fp32])
    row = [line for line in lines if line.startswith("| market")]
    assert row == ["| market | xinggan | 8 | bf16 | 0.500 / 2.000 / 2.500 (x4.00, x5.00) | "
                   "2.000 / 6.000 / 7.500 (x3.00, x3.75) | 4.000 / 8.000 (x2.00) | 0.0470 | "
                   "0.00720 | 0.9900 (0.9800; 16) |"]
    assert bench.amp_section([fp32]) == []
