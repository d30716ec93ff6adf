"""The benchmark: its harness (a fake clock, counts worked out by hand), its reports (rows the
tests choose), its plan, the hardware-dependent choices forced both ways, and one run of its
command line on the toy network."""
from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xinggan.bench import harness, report, workloads

from helpers import load_script

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def _benchmark_cli():
    return load_script("benchmark")


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

    summary = harness.timed_interleaved({"fn": fn}, CPU, repeats=4, warmup=2, clock=clock)["fn"]
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

    harness.timed_interleaved({"f": lambda: events.append("fn")}, torch.device("cuda"), 2, 1, clock)
    assert events == ["fn", "sync", "clock", "fn", "sync", "clock", "clock", "fn", "sync", "clock"]
    events.clear()
    harness.timed_interleaved({"f": lambda: events.append("fn")}, CPU, 1, 0, clock)
    assert events == ["clock", "fn", "clock"]
    with pytest.raises(ValueError):
        harness.timed_interleaved({"f": lambda: None}, CPU, repeats=0)


def touch(size_mb: int) -> float:
    """Write ``size_mb`` MB (so that they are resident) and read one value back."""
    return float(torch.ones(size_mb * 2**20 // 4)[-1])


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="Linux /proc needed")
def test_peak_rss_in_a_fresh_process_sees_what_the_step_touches():
    res = harness.in_fresh_process(harness.peak_rss_over, functools.partial(touch, 96))
    assert res["rise_kb"] >= 0.9 * 96 * 1024 and res["peak_kb"] >= res["rise_kb"]
    assert res["method"].startswith("VmHWM rise")


def test_op_and_host_read_counts(monkeypatch):
    """Counted by hand: a product, a sum and four host reads (item, float, bool, tolist) made from
    code inside the package (here: this file, the package folder pointed at it); none from
    outside it. Each scalar read also dispatches aten._local_scalar_dense (tolist does not)."""
    a, b = torch.ones(2, 2), torch.ones(2, 2)

    def step():
        c = (a @ b).sum()
        return c.item(), float(c), bool(c), c.tolist()

    monkeypatch.setattr(harness, "PACKAGE", Path(__file__).parent)
    counts = harness.count_ops(step, CPU)
    assert counts["host_reads"] == 4
    assert counts["ops"] == 2 + 3 and counts["top"]["aten._local_scalar_dense"] == 3
    monkeypatch.setattr(harness, "PACKAGE", REPO / "xinggan")
    assert harness.count_ops(step, CPU)["host_reads"] == 0
    assert torch.Tensor.item is not None and float(torch.ones(())) == 1.0  # methods put back


def test_dispatch_counter_sees_device_to_host_copies():
    """What counts as a host read on CUDA, shown without a GPU: a scalar read, and a copy from a
    non-CPU device (here "meta", which then fails) to the CPU; a CPU-to-CPU copy is no read."""
    counter = harness._Counter()
    with counter:
        torch.ones(3).sum().item()
        torch.ones(3).to("cpu", copy=True)
        with pytest.raises(Exception):
            torch.ones(3, device="meta").to("cpu")
    assert counter.reads == 2


def test_union_of_kernel_intervals():
    assert harness.union_seconds([(5.0, 6.0), (0.0, 2.0), (1.0, 3.0), (2.5, 2.75)]) == 4.0
    assert harness.union_seconds([]) == 0.0


# -- the reports --------------------------------------------------------------------------------


def test_reference_cost_is_read_from_its_file(tmp_path):
    data = {"rows": [{"dataset": "market", "batch": 8, "g_eval": 2.0, "g_train": 7.0, "peak_gb": 3.0}]}
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(data))
    assert report.reference_cost("market", 8, path) == {"g_eval": 2.0, "g_train": 7.0, "peak_gb": 3.0}
    assert report.reference_cost("market", 32, path) is None
    rows = json.loads((REPO / "benchmarks" / "reference_cost.json").read_text())["rows"]
    assert report.reference_cost("deepfashion", 1) == {k: rows[2][k] for k in ("g_eval", "g_train", "peak_gb")}


def c(s, **extra):
    return {"median_s": s, "min_s": s, "max_s": s, "images_per_s": 1 / s, **extra}


def test_report_sections():
    """The projection (only at the config's batch size), the CUDA sections, the counts, the AMP
    and released sections, rendered from rows whose numbers are chosen here."""
    cfg = workloads.load("configs/deepfashion.yaml")
    assert report.schedule_projection(cfg, 1, 0.5) is None
    released_iterations = (200 + 100) * 4000 // 32  # the released recipe: 300 epochs of 4,000 pairs
    proj = report.schedule_projection(cfg, cfg.train.batch_size, 0.5)
    assert proj == {"iterations": released_iterations, "hours": 0.5 * released_iterations / 3600}
    base = {"dataset": "deepfashion", "model": "xinggan", "batch": 32, "attention": "auto"}
    fp32 = {**base, "amp": "off", "g_eval": c(2.0), "g_train": c(6.0), "iteration": c(8.0),
            "released": {"g_eval": c(2.5), "g_train": c(7.5), "peak_memory_gb": 3.0}, "peak_memory_gb": 1.5}
    bf16 = {**base, "amp": "bf16", "g_eval": c(0.5), "g_train": c(2.0),
            "iteration": c(4.0, peak_memory_gb=21.5, projected=proj),
            "deviation": {"max_abs": 0.047, "mean_abs": 0.0072, "ssim_vs_fp32": 0.99, "ssim_vs_fp32_min": 0.98,
                          "ssim_pairs": 16},
            "counts": {"ops": 1234, "host_reads": 2, "host_reads_method": "m", "top": {"aten.add": 9}},
            "loader": {"bytes_per_sample": 100, "samples_per_s_per_worker": 50.0, "consumed_per_s": 8.0,
                       "workers_needed": 0.16},
            "sdpa_kernels": [{"dtype": "torch.bfloat16", "q": [32, 1, 2816, 32], "v": [32, 1, 2816, 256],
                              "grad": True, "kernels": []}]}
    md = report.markdown({"machine": {"gpu": "a GPU", "torch": "x", "commit": "c"}, "rows": [fp32, bf16],
                          "device": "cuda:0", "tf32": True})
    assert "(0.25; 21.5 GB; 5.2 h for 37500)" in md
    assert "| deepfashion | xinggan | 32 | bf16 | 1234 | 2 (m) | aten.add 9 | 100 | 50.0 | 8.0 | 0.16 |" in md
    assert "| none: chunked |" in md and "amp off on CUDA = float32 weights with TF32" in md
    assert ("| deepfashion | xinggan | 32 | bf16 | 0.500 / 2.000 / 2.500 (x4.00, x5.00) | 2.000 / 6.000 / 7.500 "
            "(x3.00, x3.75) | 4.000 / 8.000 (x2.00) | 0.0470 | 0.00720 | 0.9900 (0.9800; 16) |") in md
    assert "| deepfashion | 32 | auto | 2.000 / 2.500 (x1.25) | 6.000 / 7.500 (x1.25) | 1.50 / 3.00 | - |" in md
    cpu_md = report.markdown({"machine": {"cpu": "a CPU", "torch_threads": 2, "torch": "x", "commit": "c"},
                              "rows": [fp32], "device": "cpu", "tf32": True})
    assert "Fused SDPA" not in cpu_md and "amp off on CUDA" not in cpu_md and "Reduced precision" not in cpu_md


# -- the plan and the workloads -----------------------------------------------------------------


def test_plan_on_cpu_times_the_amp_settings_together():
    settings = workloads.plan(["market", "nowhere"], ["xinggan"], [1, 8], ["off", "bf16"],
                              ["auto", "sdpa", "reference"], CPU)
    assert [(s.batch, s.amps, s.attention, s.released, s.iteration) for s in settings] == [
        (1, ("off", "bf16"), "auto", True, True), (1, ("off",), "sdpa", False, False),
        (1, ("off",), "reference", False, False), (8, ("off", "bf16"), "auto", True, True)]
    assert all(s.config == "configs/market.yaml" for s in settings)
    assert [s.released for s in workloads.plan(["market"], ["xinggan"], [1], ["off"], ["auto"], CPU,
                                                released=False)] == [False]


def test_plan_on_gpu_times_one_amp_setting_at_a_time():
    settings = workloads.plan(["deepfashion"], ["xinggan", "xingganpp"], [32], ["off", "bf16"],
                              ["auto", "chunked"], torch.device("cuda"))
    assert [(s.model, s.amps, s.attention, s.released) for s in settings] == [
        ("xinggan", ("off",), "auto", True), ("xinggan", ("off",), "chunked", False),
        ("xinggan", ("bf16",), "auto", False), ("xingganpp", ("off",), "auto", False),
        ("xingganpp", ("off",), "chunked", False), ("xingganpp", ("bf16",), "auto", False)]


def test_model_batch_goes_through_the_data_layer():
    """The bench's inputs are those :func:`xinggan.data.model_inputs` makes of a collated batch:
    images in [-1, 1] on a 1/127.5 grid, 18 heatmaps per pose; the same seed, the same batch."""
    cfg = workloads.load("configs/toy.yaml")
    b = workloads.model_batch(cfg, 2, CPU, seed=3)
    assert b["source_image"].shape == (2, 3, 64, 32) and b["target_pose"].shape == (2, 18, 64, 32)
    pixels = (b["source_image"] + 1) * 127.5
    assert b["source_image"].abs().max() <= 1 and torch.allclose(pixels, pixels.round(), atol=1e-4)
    assert torch.equal(workloads.model_batch(cfg, 2, CPU, seed=3)["target_pose"], b["target_pose"])


def test_loader_bytes_per_sample_of_toy_images():
    """Two uint8 images and two float32 (18, 2) keypoint arrays per item."""
    cfg = workloads.load("configs/toy.yaml", ["data.root=/nonexistent"])
    res = workloads.loader_rate(cfg, samples=2)
    assert res["bytes_per_sample"] == 2 * 3 * 64 * 32 + 2 * 18 * 2 * 4
    assert res["samples_per_s_per_worker"] > 0 and res["source"] == "toy images 64 x 32"


def run_main_with_stand_ins(monkeypatch, tmp_path, *args) -> tuple[dict, list, list]:
    """The command line's ``main`` with the measuring replaced by a stand-in: the plan, the flags
    and the report, without the minutes of measuring."""
    from xinggan import runtime

    configured, seen = [], []

    def measure(setting, device, options):
        seen.append((setting, options))
        return [{"dataset": setting.dataset, "model": setting.model, "batch": setting.batch, "amp": a,
                 "attention": setting.attention} for a in setting.amps]

    def configure(device, *, deterministic=False, tf32=True):
        configured.append((torch.device(device), deterministic, tf32))
        return ["recorded"]

    monkeypatch.setattr(workloads, "measure_setting", measure)
    monkeypatch.setattr(runtime, "configure_backends", configure)
    out = tmp_path / "stand-in"
    assert _benchmark_cli().main(["--device", "cpu", "--threads", str(torch.get_num_threads()),
                                  "--out", str(out), *args]) == 0
    return json.loads(Path(f"{out}.json").read_text()), configured, seen


@pytest.mark.parametrize("native", [True, False])
def test_without_amp_the_cpu_rows_follow_native_bf16(monkeypatch, tmp_path, native):
    """``amp: auto`` picks bf16 on a CPU with native bf16 (forced here both ways), so the run
    times a bf16 row beside fp32 there, and fp32 alone elsewhere."""
    from xinggan import precision

    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda *a: ("amx_bf16",) if native else ())
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: native)
    results, _, _ = run_main_with_stand_ins(monkeypatch, tmp_path, "--datasets", "toy", "--batches", "1",
                                             "--attention", "auto")
    assert [r["amp"] for r in results["rows"]] == (["off", "bf16"] if native else ["off"])


def test_quick_and_the_backend_flags(monkeypatch, tmp_path):
    """--quick: Market XingGAN at batch 1, auto and sdpa, 2 repeats; the flags are the configs'
    (here TF32 off, deterministic on), --tf32 overriding TF32."""
    load = workloads.load
    monkeypatch.setattr(workloads, "load", lambda path, overrides=(): load(
        path, [*overrides, "train.tf32=false", "train.deterministic=true"]))
    results, configured, seen = run_main_with_stand_ins(monkeypatch, tmp_path, "--quick", "--amp", "off")
    assert [(s.dataset, s.model, s.batch, s.attention) for s, _ in seen] == [
        ("market", "xinggan", 1, "auto"), ("market", "xinggan", 1, "sdpa")]
    assert seen[0][1].repeats == 2 and results["complete"] is True
    assert configured == [(CPU, True, False)] and results["tf32"] is False
    _, configured, _ = run_main_with_stand_ins(monkeypatch, tmp_path, "--quick", "--amp", "off", "--tf32", "on")
    assert configured == [(CPU, True, True)]


# -- one end-to-end run ---------------------------------------------------------------------------


def test_benchmark_command_line_on_the_toy_network(tmp_path):
    """The toy network on the CPU in float32, one repeat: every part of a row is there, with the
    released pass, the counts and the loader (the fresh-process peak memory is tested above)."""
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark.py"), "--datasets", "toy", "--models",
                          "xinggan", "--batches", "1", "--device", "cpu", "--amp", "off", "--attention", "auto",
                          "--repeats", "1", "--warmup", "0", "--no-memory", "--out", str(out)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    assert not list(tmp_path.glob("runs")), "wrote outside --out"
    results = json.loads(Path(f"{out}.json").read_text())
    assert results["complete"] is True and results["device"] == "cpu" and results["repeats"] == 1
    assert "cpu: denormals flushed to zero" in results["backends"]
    (row,) = results["rows"]
    assert (row["dataset"], row["batch"], row["attention"], row["amp"]) == ("toy", 1, "auto", "off")
    assert "error" not in row, row
    for part in (row, row["released"]):
        assert part["g_eval"]["runs"] == part["g_train"]["runs"] == 1 and "peak_memory_gb" not in part
    assert row["iteration"]["images_per_s"] > 0 and row["reference"] is None
    assert row["counts"]["ops"] > 100 and row["counts"]["top"]["aten.convolution"] > 0
    assert row["loader"]["bytes_per_sample"] == 2 * 3 * 64 * 32 + 2 * 18 * 2 * 4
    md = Path(f"{out}.md").read_text()
    assert "Side by side with the released forward pass" in md and "| toy | xinggan | 1 | off | auto |" in md
