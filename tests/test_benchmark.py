"""The benchmark suite's quick mode runs and writes its JSON and Markdown reports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_reports(tmp_path):
    """The quick matrix on the CPU in float32, both named: without ``--amp`` the AMP rows
    depend on the CPU (a bf16 row where it has AMX-BF16 or AVX512-BF16, tested below with the
    CPU forced), and without ``--device`` on whether CUDA is present."""
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, "scripts/benchmark.py", "--quick", "--no-memory",
                          "--device", "cpu", "--amp", "off", "--out", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["quick"] and results["machine"]["torch"] and results["complete"] is True
    assert results["device"] == "cpu"
    rows = results["rows"]
    assert [(r["attention"], r["amp"]) for r in rows] == [("auto", "off"), ("sdpa", "off")]
    # the flags train.py sets on the CPU (xinggan.runtime.configure_backends)
    assert "cpu: denormals flushed to zero" in results["backends"]
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
                          "--attention", "auto", "--deviation-pairs", "3", "--device", "cpu",
                          "--out", str(out)],
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


# -- choices that depend on the hardware, each branch forced --------------------------------


def fake_cpu(monkeypatch, native: bool) -> None:
    """A CPU with (AMX-BF16 and oneDNN's bf16 path) or without native bf16, whatever this one is."""
    from xinggan import precision

    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda *a: ("amx_bf16",) if native else ())
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: native)


def fake_gpu(monkeypatch, bf16: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "a GPU")


@pytest.mark.parametrize("native", [True, False])
def test_default_amp_rows_on_cpu_follow_native_bf16(monkeypatch, native):
    bench = _benchmark_module()
    fake_cpu(monkeypatch, native)
    amps, line = bench.default_amps(torch.device("cpu"))
    assert amps == (["off", "bf16"] if native else ["off"])
    assert ("bfloat16" in line) is native and ("float32 on cpu" in line) is not native


@pytest.mark.parametrize("bf16", [True, False])
def test_default_amp_rows_on_cuda_follow_bf16_support(monkeypatch, bf16):
    bench = _benchmark_module()
    fake_gpu(monkeypatch, bf16)
    amps, _ = bench.default_amps(torch.device("cuda"))
    assert amps == (["off", "bf16"] if bf16 else ["off"])


def run_main_with_stand_ins(bench, monkeypatch, tmp_path, *args) -> tuple[dict, list]:
    """``benchmark.main`` on the CPU with the timing replaced by a stand-in (its rows carry
    made-up seconds) and configure_backends recorded: the plan and the flags, without the
    minutes of measuring."""
    from xinggan import runtime

    cell = {"median_s": 1.0, "min_s": 1.0, "max_s": 1.0, "runs": 1, "images_per_s": 1.0}
    configured = []

    def bench_generator(cfg, batch, device, repeats, amps, released=False, deviation_pairs=0):
        return {amp: {"g_eval": dict(cell), "g_train": dict(cell)} for amp in amps}

    def configure(device, *, deterministic=False, tf32=True):
        configured.append((torch.device(device), deterministic, tf32))
        return ["recorded"]

    monkeypatch.setattr(bench, "bench_generator", bench_generator)
    monkeypatch.setattr(runtime, "configure_backends", configure)
    out = tmp_path / "stand-in"
    assert bench.main(["--datasets", "toy", "--models", "xinggan", "--batches", "1",
                       "--attention", "auto", "--no-memory", "--no-iteration", "--no-released",
                       "--device", "cpu", "--threads", str(torch.get_num_threads()),
                       "--out", str(out), *args]) == 0
    return json.loads(out.with_suffix(".json").read_text()), configured


@pytest.mark.parametrize("native", [True, False])
def test_without_amp_the_cpu_rows_follow_native_bf16(monkeypatch, tmp_path, native):
    """What the issue saw on a Sapphire Rapids CPU: ``auto`` picks bf16 there, so the run
    times a bf16 row beside fp32; on a CPU without native bf16, fp32 alone."""
    bench = _benchmark_module()
    fake_cpu(monkeypatch, native)
    results, _ = run_main_with_stand_ins(bench, monkeypatch, tmp_path)
    assert [r["amp"] for r in results["rows"]] == (["off", "bf16"] if native else ["off"])


def test_backend_flags_are_the_configs_unless_tf32_is_given(monkeypatch, tmp_path):
    """The benchmark sets the flags training sets: the configs' train.deterministic and
    train.tf32 (here a config with TF32 off), ``--tf32`` overriding the latter; the report
    keeps them."""
    bench = _benchmark_module()
    load = bench.load
    monkeypatch.setattr(bench, "load", lambda path, overrides: load(
        path, [*overrides, "train.tf32=false", "train.deterministic=true"]))
    results, configured = run_main_with_stand_ins(bench, monkeypatch, tmp_path, "--amp", "off")
    assert configured == [(torch.device("cpu"), True, False)]
    assert results["tf32"] is False and results["backends"] == ["recorded"]
    results, configured = run_main_with_stand_ins(bench, monkeypatch, tmp_path, "--amp", "off",
                                                  "--tf32", "on")
    assert configured == [(torch.device("cpu"), True, True)] and results["tf32"] is True


def test_configs_that_disagree_on_tf32_need_the_option():
    bench = _benchmark_module()
    on = bench.load("configs/toy.yaml", [])
    off = bench.load("configs/toy.yaml", ["train.tf32=false"])
    assert bench.backend_settings([on, on]) == (False, True)
    assert bench.backend_settings([off]) == (False, False)
    with pytest.raises(ValueError, match="train.tf32 differs.*--tf32"):
        bench.backend_settings([on, off])
    assert bench.backend_settings([on, off], "off") == (False, False)


@pytest.mark.parametrize("device, tf32, expected", [
    ("cuda:0", True, "amp off on CUDA = float32 weights with TF32 matmuls"),
    ("cuda:0", False, "amp off on CUDA = strict float32"),
    ("cpu", True, None),
])
def test_report_says_what_amp_off_means(device, tf32, expected):
    bench = _benchmark_module()
    results = {"machine": {"gpu": "a GPU", "torch": "x", "commit": "c"}, "rows": [],
               "device": device, "tf32": tf32, "backends": ["recorded"]}
    md = bench.markdown(results)
    assert "Backends: recorded." in md
    if expected is None:
        assert "amp off on CUDA" not in md
    else:
        assert expected in md
