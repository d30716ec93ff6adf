"""The benchmark: its timing harness, its reports, its plan and one quick run of its CLI.

The harness is tested with a fake clock (no timing assertions on this machine's speed); the
reports are rendered from rows whose values the tests choose; the choices that depend on the
hardware (bf16 units, CUDA) are forced both ways with monkeypatch. One end-to-end run of
``scripts/benchmark.py --quick --device cpu --amp off`` checks that the pieces fit.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xinggan.bench import harness, report, workloads

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def _benchmark_cli():
    spec = importlib.util.spec_from_file_location("benchmark_cli", REPO / "scripts/benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the harness -------------------------------------------------------------------------------


class FakeClock:
    """A clock that only moves when a timed function says how long it took."""

    def __init__(self):
        self.now = 1000.0
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return self.now


def test_timed_summarises_the_repeats_after_untimed_warmup():
    clock = FakeClock()
    durations = iter([100.0, 50.0, 3.0, 1.0, 2.0, 5.0])  # two warm-up calls, then four timed

    def fn():
        clock.now += next(durations)

    summary = harness.timed(fn, CPU, repeats=4, warmup=2, clock=clock)
    assert summary == {"median_s": 2.5, "min_s": 1.0, "max_s": 5.0, "runs": 4}
    assert clock.readings == 8  # before and after each timed call, never around a warm-up


def test_timed_interleaved_runs_the_callables_in_turn():
    clock = FakeClock()
    calls = []
    took = {"a": iter([9.0, 1.0, 3.0, 2.0]), "b": iter([9.0, 10.0, 30.0, 20.0])}

    def make(name):
        def fn():
            calls.append(name)
            clock.now += next(took[name])
        return fn

    out = harness.timed_interleaved({"a": make("a"), "b": make("b")}, CPU, repeats=3,
                                    warmup=1, clock=clock)
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert out["a"] == {"median_s": 2.0, "min_s": 1.0, "max_s": 3.0, "runs": 3}
    assert out["b"] == {"median_s": 20.0, "min_s": 10.0, "max_s": 30.0, "runs": 3}


def test_timing_on_cuda_synchronises_before_each_clock_reading(monkeypatch):
    """Without a GPU: ``torch.cuda.synchronize`` is recorded, so the order of the events shows
    that each timed call's queued kernels are waited for before the clock stops."""
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))

    def clock():
        events.append("clock")
        return 0.0

    harness.timed(lambda: events.append("fn"), torch.device("cuda"), repeats=2, warmup=1,
                  clock=clock)
    assert events == ["fn", "sync", "clock", "fn", "sync", "clock", "clock", "fn", "sync",
                      "clock"]
    events.clear()
    harness.timed(lambda: events.append("fn"), CPU, repeats=1, warmup=0, clock=clock)
    assert events == ["clock", "fn", "clock"]


def test_timing_needs_at_least_one_run():
    with pytest.raises(ValueError):
        harness.timed(lambda: None, CPU, repeats=0)
    with pytest.raises(ValueError):
        harness.summarise([])


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="Linux /proc needed")
def test_peak_rss_over_a_step_sees_what_the_step_touches():
    size_mb = 96

    def step():
        block = torch.ones(size_mb * 2**20 // 4)  # written, so resident
        return float(block[-1])

    res = harness.peak_rss_over(step)
    assert res["rise_kb"] >= 0.9 * size_mb * 1024
    assert res["peak_kb"] >= res["rise_kb"]
    assert res["method"].startswith("VmHWM rise")


def test_measure_in_fresh_process_reads_the_last_json_line(tmp_path, monkeypatch):
    (tmp_path / "child_ok.py").write_text(
        "import json, sys\nprint('building...')\nprint(json.dumps({'args': sys.argv[1:]}))\n")
    (tmp_path / "child_fails.py").write_text(
        "import sys\nsys.exit('no memory for this step')\n")
    monkeypatch.chdir(tmp_path)  # python -m finds modules of the working directory
    assert harness.measure_in_fresh_process("child_ok", ["--batch", 8]) == {
        "args": ["--batch", "8"]}
    with pytest.raises(RuntimeError, match="child_fails failed: no memory for this step"):
        harness.measure_in_fresh_process("child_fails", [])


# -- the reports -------------------------------------------------------------------------------


def cell(median: float, low: float, high: float, batch: int) -> dict:
    return {"median_s": median, "min_s": low, "max_s": high, "runs": 3,
            "images_per_s": batch / median}


def expected_cell(v: dict) -> str:
    return (f"{v['median_s']:.3f} [{v['min_s']:.3f}-{v['max_s']:.3f}] "
            f"({v['images_per_s']:.2f})")


def test_reports_hold_the_rows(tmp_path):
    rows = [{"dataset": "market", "model": "xinggan", "batch": 8, "amp": "off",
             "attention": "auto", "g_eval": cell(0.8, 0.7, 1.1, 8), "g_train": cell(2.5, 2.4, 3.0, 8),
             "iteration": cell(4.0, 4.0, 4.0, 8), "peak_memory_gb": 1.234},
            {"dataset": "deepfashion", "model": "xingganpp", "batch": 1, "amp": "off",
             "attention": "sdpa", "error": "out of memory"}]
    results = {"machine": {"cpu": "a CPU", "torch_threads": 2, "torch": "9.9", "commit": "abc"},
               "device": "cpu", "command": "python scripts/benchmark.py --x", "rows": rows,
               "memory_method": "a method"}
    json_path, md_path = report.write_reports(results, tmp_path / "sub" / "bench.v2",
                                              complete=False)
    assert (json_path.name, md_path.name) == ("bench.v2.json", "bench.v2.md")
    assert json.loads(json_path.read_text()) == {**results, "complete": False}
    md = md_path.read_text()
    assert md.startswith("# Benchmark (a CPU, 2 threads; torch 9.9; commit abc)")
    assert "Command: `python scripts/benchmark.py --x`" in md and "Peak memory: a method." in md
    assert "**Incomplete" in md
    first, second = rows
    assert (f"| market | xinggan | 8 | off | auto | {expected_cell(first['g_eval'])} | "
            f"{expected_cell(first['g_train'])} | {expected_cell(first['iteration'])} | "
            f"{first['peak_memory_gb']:.2f} |") in md.splitlines()
    assert "| deepfashion | xingganpp | 1 | off | sdpa | - | - | - | - | error: out of memory" \
        in md.splitlines()
    report.write_reports(results, tmp_path / "sub" / "bench.v2")
    assert json.loads(json_path.read_text())["complete"] is True
    assert "Incomplete" not in md_path.read_text()


def test_output_prefix_defaults_outside_the_tracked_reports(tmp_path):
    assert report.resolve_out(None, "benchmark") == REPO / "runs" / "benchmarks" / "benchmark"
    assert "/runs/" in (REPO / ".gitignore").read_text().split()  # git ignores the default
    assert report.resolve_out("benchmarks/x", "benchmark") == REPO / "benchmarks" / "x"
    assert report.resolve_out(tmp_path / "y.json", "benchmark") == tmp_path / "y"


def test_reference_cost_lookup(tmp_path):
    data = {"rows": [{"dataset": "market", "batch": 1, "g_eval": 0.3, "g_train": 0.9,
                      "peak_gb": 0.4, "setting": "Market"},
                     {"dataset": "market", "batch": 8, "g_eval": 2.0, "g_train": 7.0,
                      "peak_gb": 3.0, "setting": "Market"}]}
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(data))
    assert report.reference_cost("market", 8, path) == {"g_eval": 2.0, "g_train": 7.0,
                                                        "peak_gb": 3.0}
    assert report.reference_cost("market", 32, path) is None
    assert report.reference_cost("toy", 1, path) is None


def test_the_reference_cost_has_one_home():
    """benchmarks/reference_cost.json holds the released code's cost; docs/architecture.md
    describes it and points there, without a copy of the numbers."""
    data = report.load_reference_cost()
    assert data["description"] and data["provenance"] and data["units"]
    assert {(r["dataset"], r["batch"]) for r in data["rows"]} == {
        ("market", 1), ("market", 8), ("deepfashion", 1), ("deepfashion", 8)}
    for row in data["rows"]:
        assert all(row[key] > 0 for key in ("g_eval", "g_train", "peak_gb")), row
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text[text.index("## Reference cost"):]
    section = section[:section.index("\n## ", 1)]
    assert "benchmarks/reference_cost.json" in section
    assert not [line for line in section.splitlines() if line.startswith("|")]


def test_schedule_projection_and_gpu_sections_of_the_report():
    """The projected schedule hours (only at the config's batch size) and the CUDA-only report
    sections, rendered from a results dict shaped as a GPU run writes it."""
    cfg = workloads.load("configs/deepfashion.yaml")
    assert report.schedule_projection(cfg, 1, 0.5) is None
    proj = report.schedule_projection(cfg, cfg.train.batch_size, 0.5)
    # the released DeepFashion recipe: 200 + 100 epochs of 4,000 pairs at batch 32
    released_iterations = (200 + 100) * 4000 // 32
    assert proj == {"iterations": released_iterations, "hours": 0.5 * released_iterations / 3600}
    c = {"median_s": 0.5, "min_s": 0.4, "max_s": 0.6, "images_per_s": 64.0}
    row = {"dataset": "deepfashion", "model": "xinggan", "batch": 32, "amp": "bf16",
           "attention": "auto", "g_eval": c, "g_train": c,
           "iteration": {**c, "peak_memory_gb": 21.5, "projected": proj},
           "sdpa_kernels": [{"device": "cuda:0", "dtype": "torch.bfloat16", "q": [32, 1, 2816, 32],
                             "k": [32, 1, 2816, 32], "v": [32, 1, 2816, 256], "grad": True,
                             "kernels": ["efficient"]},
                            {"device": "cuda:0", "dtype": "torch.float32", "q": [1, 1, 8, 32],
                             "k": [1, 1, 8, 32], "v": [1, 1, 8, 256], "grad": False,
                             "kernels": []}]}
    md = report.markdown({"machine": {"gpu": "a GPU", "torch": "x", "commit": "c"},
                          "rows": [row], "command": "python scripts/benchmark.py"})
    assert "| deepfashion | xinggan | 32 | bf16 | 0.500 | 64.0 | 21.5 | 37500 | 5.2 |" in md
    assert "| efficient |" in md and "| none: chunked |" in md
    cpu_md = report.markdown({"machine": {"cpu": "a CPU", "torch_threads": 2, "torch": "x",
                                          "commit": "c"},
                              "rows": [{**row, "iteration": c, "sdpa_kernels": []}]})
    assert "Full training schedule" not in cpu_md and "Fused SDPA" not in cpu_md


def test_amp_section_of_the_report():
    def c(s):
        return {"median_s": s, "min_s": s, "max_s": s, "images_per_s": 1 / s}

    base = {"dataset": "market", "model": "xinggan", "batch": 8, "attention": "auto"}
    fp32 = {**base, "amp": "off", "g_eval": c(2.0), "g_train": c(6.0),
            "iteration": c(8.0), "released": {"g_eval": c(2.5), "g_train": c(7.5)}}
    bf16 = {**base, "amp": "bf16", "g_eval": c(0.5), "g_train": c(2.0),
            "iteration": c(4.0), "deviation": {"max_abs": 0.047, "mean_abs": 0.0072,
                                               "ssim_vs_fp32": 0.99, "ssim_vs_fp32_min": 0.98,
                                               "ssim_pairs": 16}}
    lines = report.amp_section([bf16, fp32])
    row = [line for line in lines if line.startswith("| market")]
    assert row == ["| market | xinggan | 8 | bf16 | 0.500 / 2.000 / 2.500 (x4.00, x5.00) | "
                   "2.000 / 6.000 / 7.500 (x3.00, x3.75) | 4.000 / 8.000 (x2.00) | 0.0470 | "
                   "0.00720 | 0.9900 (0.9800; 16) |"]
    assert report.amp_section([fp32]) == []


@pytest.mark.parametrize("device, tf32, expected", [
    ("cuda:0", True, "amp off on CUDA = float32 weights with TF32 matmuls"),
    ("cuda:0", False, "amp off on CUDA = strict float32"),
    ("cpu", True, None),
])
def test_report_says_what_amp_off_means(device, tf32, expected):
    results = {"machine": {"gpu": "a GPU", "torch": "x", "commit": "c"}, "rows": [],
               "device": device, "tf32": tf32, "backends": ["recorded"]}
    md = report.markdown(results)
    assert "Backends: recorded." in md
    if expected is None:
        assert "amp off on CUDA" not in md
    else:
        assert expected in md


# -- the plan and the workloads ----------------------------------------------------------------


def test_plan_on_cpu_times_the_amp_settings_together():
    settings = workloads.plan(["market", "nowhere"], ["xinggan"], [1, 8], ["off", "bf16"],
                              ["auto", "sdpa", "reference"], CPU)
    assert [(s.batch, s.amps, s.attention, s.released, s.iteration) for s in settings] == [
        (1, ("off", "bf16"), "auto", True, True),
        (1, ("off",), "sdpa", False, False),
        (1, ("off",), "reference", False, False),
        (8, ("off", "bf16"), "auto", True, True)]
    assert all(s.config == "configs/market.yaml" for s in settings)
    no_released = workloads.plan(["market"], ["xinggan"], [1], ["off"], ["auto"], CPU,
                                 released=False)
    assert [s.released for s in no_released] == [False]


def test_plan_on_gpu_times_one_amp_setting_at_a_time():
    settings = workloads.plan(["deepfashion"], ["xinggan", "xingganpp"], [32], ["off", "bf16"],
                              ["auto", "chunked"], torch.device("cuda"))
    assert [(s.model, s.amps, s.attention, s.released) for s in settings] == [
        ("xinggan", ("off",), "auto", True), ("xinggan", ("off",), "chunked", False),
        ("xinggan", ("bf16",), "auto", False),
        ("xingganpp", ("off",), "auto", False), ("xingganpp", ("off",), "chunked", False),
        ("xingganpp", ("bf16",), "auto", False)]


def test_generator_with_amp_and_the_released_pass():
    """bf16 and fp32 timed together with the released pass on a small network: each setting
    has its timings, the released pass sits beside fp32, and bf16 has its deviation."""
    cfg = workloads.load("configs/toy.yaml", ["model.generator.ngf=4",
                                              "model.generator.n_blocks=1",
                                              "model.generator.num_candidates=2"])
    out = workloads.bench_generator(cfg, 1, CPU, repeats=1, amps=["bf16", "off"],
                                    released=True, deviation_pairs=3, warmup=0)
    assert set(out) == {"bf16", "off", "released"}
    for entry in out.values():
        for key in ("g_eval", "g_train"):
            assert entry[key]["runs"] == 1 and entry[key]["median_s"] > 0
            assert entry[key]["images_per_s"] == 1 / entry[key]["median_s"]
    assert "deviation" not in out["off"]
    dev = out["bf16"]["deviation"]
    assert dev["ssim_pairs"] == 3 and 0 < dev["ssim_vs_fp32_min"] <= dev["ssim_vs_fp32"] <= 1
    assert 0 <= dev["mean_abs"] <= dev["max_abs"] <= 2


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
    fake_cpu(monkeypatch, native)
    amps, line = workloads.default_amps(CPU)
    assert amps == (["off", "bf16"] if native else ["off"])
    assert ("bfloat16" in line) is native and ("float32 on cpu" in line) is not native


@pytest.mark.parametrize("bf16", [True, False])
def test_default_amp_rows_on_cuda_follow_bf16_support(monkeypatch, bf16):
    fake_gpu(monkeypatch, bf16)
    amps, _ = workloads.default_amps(torch.device("cuda"))
    assert amps == (["off", "bf16"] if bf16 else ["off"])


def run_main_with_stand_ins(monkeypatch, tmp_path, *args) -> tuple[dict, list]:
    """The CLI's ``main`` on the CPU with the timing replaced by a stand-in (its rows carry
    made-up seconds) and configure_backends recorded: the plan and the flags, without the
    minutes of measuring."""
    from xinggan import runtime

    bench = _benchmark_cli()
    c = {"median_s": 1.0, "min_s": 1.0, "max_s": 1.0, "runs": 1, "images_per_s": 1.0}
    configured = []

    def bench_generator(cfg, batch, device, repeats, amps, released=False, deviation_pairs=0,
                        warmup=1):
        return {amp: {"g_eval": dict(c), "g_train": dict(c)} for amp in amps}

    def configure(device, *, deterministic=False, tf32=True):
        configured.append((torch.device(device), deterministic, tf32))
        return ["recorded"]

    monkeypatch.setattr(workloads, "bench_generator", bench_generator)
    monkeypatch.setattr(runtime, "configure_backends", configure)
    out = tmp_path / "stand-in"
    assert bench.main(["--datasets", "toy", "--models", "xinggan", "--batches", "1",
                       "--attention", "auto", "--no-memory", "--no-iteration", "--no-released",
                       "--device", "cpu", "--threads", str(torch.get_num_threads()),
                       "--out", str(out), *args]) == 0
    return json.loads(Path(f"{out}.json").read_text()), configured


@pytest.mark.parametrize("native", [True, False])
def test_without_amp_the_cpu_rows_follow_native_bf16(monkeypatch, tmp_path, native):
    """What the issue saw on a Sapphire Rapids CPU: ``auto`` picks bf16 there, so the run
    times a bf16 row beside fp32; on a CPU without native bf16, fp32 alone."""
    fake_cpu(monkeypatch, native)
    results, _ = run_main_with_stand_ins(monkeypatch, tmp_path)
    assert [r["amp"] for r in results["rows"]] == (["off", "bf16"] if native else ["off"])


def test_backend_flags_are_the_configs_unless_tf32_is_given(monkeypatch, tmp_path):
    """The benchmark sets the flags training sets: the configs' train.deterministic and
    train.tf32 (here a config with TF32 off), ``--tf32`` overriding the latter; the report
    keeps them."""
    load = workloads.load
    monkeypatch.setattr(workloads, "load", lambda path, overrides=(): load(
        path, [*overrides, "train.tf32=false", "train.deterministic=true"]))
    results, configured = run_main_with_stand_ins(monkeypatch, tmp_path, "--amp", "off")
    assert configured == [(CPU, True, False)]
    assert results["tf32"] is False and results["backends"] == ["recorded"]
    results, configured = run_main_with_stand_ins(monkeypatch, tmp_path, "--amp", "off",
                                                  "--tf32", "on")
    assert configured == [(CPU, True, True)] and results["tf32"] is True


def test_configs_that_disagree_on_tf32_need_the_option():
    on = workloads.load("configs/toy.yaml")
    off = workloads.load("configs/toy.yaml", ["train.tf32=false"])
    assert workloads.backend_settings([on, on]) == (False, True)
    assert workloads.backend_settings([off]) == (False, False)
    with pytest.raises(ValueError, match="train.tf32 differs.*--tf32"):
        workloads.backend_settings([on, off])
    assert workloads.backend_settings([on, off], "off") == (False, False)


# -- one end-to-end run ------------------------------------------------------------------------


def test_quick_benchmark_writes_reports(tmp_path):
    """The quick matrix on the CPU in float32, both named: without ``--amp`` the AMP rows
    depend on the CPU (tested above with the CPU forced), and without ``--device`` on whether
    CUDA is present. The peak memory comes from fresh processes (python -m
    xinggan.bench.memory), ours and the released pass."""
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark.py"), "--quick",
                          "--device", "cpu", "--amp", "off", "--attention", "auto", "--repeats", "1",
                          "--warmup", "0",
                          "--out", str(out)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    assert not list(tmp_path.glob("runs")), "wrote outside --out"
    results = json.loads(Path(f"{out}.json").read_text())
    assert results["quick"] and results["machine"]["torch"] and results["complete"] is True
    assert results["device"] == "cpu" and results["repeats"] == 1
    rows = results["rows"]
    assert [(r["dataset"], r["batch"], r["attention"], r["amp"]) for r in rows] == [
        ("market", 1, "auto", "off")]
    # the flags train.py sets on the CPU (xinggan.runtime.configure_backends)
    assert "cpu: denormals flushed to zero" in results["backends"]
    documented = json.loads((REPO / "benchmarks" / "reference_cost.json").read_text())
    market_1 = next(r for r in documented["rows"] if (r["dataset"], r["batch"]) == ("market", 1))
    for row in rows:
        assert "error" not in row and "memory_error" not in row, row
        for key in ("g_eval", "g_train"):
            assert row[key]["runs"] == 1
            assert row[key]["min_s"] <= row[key]["median_s"] <= row[key]["max_s"]
        assert row["peak_memory_gb"] > 0
        assert row["reference"] == {k: market_1[k] for k in ("g_eval", "g_train", "peak_gb")}
    assert rows[0]["iteration"]["images_per_s"] > 0
    released = rows[0]["released"]  # the side-by-side literal released forward
    assert released["g_eval"]["median_s"] > 0 and released["g_train"]["median_s"] > 0
    assert released["peak_memory_gb"] > 0
    md = Path(f"{out}.md").read_text()
    assert "Side by side with the released forward pass" in md
    assert "| market | xinggan | 1 | off | auto |" in md
