"""scripts/gpu_check.py without a GPU: paths from the repository root, the report after every
part, the exit status, the 2-GPU DDP part (skipped below 2 GPUs) and its bit-for-bit
checkpoint comparison.  The parts themselves are faked; nothing here trains."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import load_script
import torch

REPO = Path(__file__).resolve().parents[1]


def load_gpu_check():
    return load_script("gpu_check", "gpu_check_under_test")


@pytest.fixture()
def gc():
    return load_gpu_check()


# -- paths ------------------------------------------------------------------------------------


def test_dry_run_from_another_folder_resolves_paths_against_the_repository(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--dry-run",
                          "--out", "reports/check"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "dry run: ok" in out.stdout
    assert f"{REPO / 'reports' / 'check'}.json" in out.stdout
    for path in ("train.py", "configs/toy.yaml", "tests/test_cuda.py", "scripts/benchmark.py"):
        assert str(REPO / path) in out.stdout, path
    assert f"--out {REPO / 'reports' / 'check'}_benchmark" in out.stdout
    assert "CUBLAS_WORKSPACE_CONFIG=:4096:8" in out.stdout
    assert not any(tmp_path.iterdir())  # a dry run writes nothing, here or anywhere
    assert not (REPO / "reports" / "check.json").exists()


def test_out_is_taken_from_the_repository_root(gc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert gc.resolve_out("benchmarks/gpu_check") == REPO / "benchmarks" / "gpu_check"
    assert gc.resolve_out(tmp_path / "elsewhere") == tmp_path / "elsewhere"
    bench = gc.plan(gc.resolve_out("x/y"))[-1]["command"]
    assert bench[bench.index("--out") + 1] == str(REPO / "x" / "y_benchmark")


def test_commands_run_from_the_repository_root_with_the_cublas_setting(gc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    result = gc.run_command([sys.executable, "-c", "import os; print(os.getcwd()); "
                             "print(os.environ.get('CUBLAS_WORKSPACE_CONFIG'))"], 60)
    assert result["status"] == "passed", result
    assert result["output_tail"].split() == [str(REPO), ":4096:8"]
    failed = gc.run_command([sys.executable, "-c", "raise SystemExit(3)"], 60)
    assert failed["status"] == "failed (exit 3)"
    stopped = gc.run_command([sys.executable, "-c", "import time; time.sleep(60)"], 1)
    assert stopped["status"] == "stopped after 1 s"


# -- the DDP part ---------------------------------------------------------------------------


@pytest.mark.parametrize("gpus", [0, 1])
def test_ddp_part_is_skipped_with_fewer_than_two_gpus(gc, monkeypatch, gpus):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)

    def no_run(*args, **kwargs):
        raise AssertionError("nothing may run with fewer than 2 GPUs")

    monkeypatch.setattr(gc, "run_commands", no_run)
    result = gc.run_ddp(90)
    assert result["status"] == "skipped: needs 2 or more GPUs"
    assert gc.part_ok(result)


def fake_checkpoint(iteration: int, tamper: bool = False) -> dict:
    """A checkpoint tree as two processes would write it; its tensors depend on the
    iteration only, so a straight and a resumed run give equal ones."""
    g = torch.Generator().manual_seed(iteration)
    weight = torch.randn(4, 3, generator=g)
    if tamper:  # one float of one tensor off by one unit in the last place
        weight[1, 2] = torch.nextafter(weight[1, 2], torch.tensor(float("inf")))
    return {"iteration": iteration, "world_size": 2,
            "generator": {"conv.weight": weight, "conv.bias": torch.randn(4, generator=g)},
            "optimizers": {"generator": {"state": {0: {"step": torch.tensor(float(iteration)),
                                                       "exp_avg": torch.randn(4, 3, generator=g)}},
                                         "param_groups": [{"lr": 0.002, "params": [0]}]}},
            "ranks": [{"rng": {"torch": torch.randint(0, 255, (16,), dtype=torch.uint8,
                                                      generator=g)}} for _ in range(2)],
            "config": {"train": {"iterations": iteration}}}


class FakeTorchrun:
    """Stands in for :func:`run_commands`: writes each run's final checkpoint into its
    ``--run-dir`` and says "resumed from" when resuming."""

    def __init__(self, tamper_resume=False, say_resumed=True):
        self.commands, self.tamper_resume, self.say_resumed = [], tamper_resume, say_resumed

    def __call__(self, commands, limit_s, keep_output=False):
        results = []
        for command in commands:
            self.commands.append(command)
            run_dir = Path(command[command.index("--run-dir") + 1])
            iterations = int(next(a for a in command if a.startswith("train.iterations="))
                             .split("=")[1])
            resume = "--resume" in command
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            torch.save(fake_checkpoint(iterations, tamper=resume and self.tamper_resume),
                       run_dir / "checkpoints" / "latest.pt")
            text = "resumed from latest.pt\n" if resume and self.say_resumed else "trained\n"
            result = {"status": "passed", "seconds": 1.0, "output_tail": text}
            if keep_output:
                result["output"] = text
            results.append(result)
        return results


def test_ddp_part_compares_a_straight_and_a_resumed_two_process_run(gc, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    fake = FakeTorchrun()
    monkeypatch.setattr(gc, "run_commands", fake)
    result = gc.run_ddp(90)
    assert result["status"] == "passed", result
    assert result["comparison"]["n_differing"] == 0
    assert result["comparison"]["tensors_compared"] == 6
    assert len(fake.commands) == 3
    straight, first, resume = fake.commands
    for command in fake.commands:
        assert "--nproc_per_node=2" in command and "train.deterministic=true" in command
        assert str(REPO / "train.py") in command and str(REPO / "configs" / "toy.yaml") in command
    run_dir = [c[c.index("--run-dir") + 1] for c in fake.commands]
    assert run_dir[1] == run_dir[2] != run_dir[0]
    assert "train.iterations=4" in straight and "train.iterations=2" in first
    assert "train.iterations=4" in resume and "--resume" in resume
    assert "--resume" not in straight and "--resume" not in first


def test_ddp_part_fails_on_one_differing_tensor_or_a_resume_that_did_not_resume(gc, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(gc, "run_commands", FakeTorchrun(tamper_resume=True))
    result = gc.run_ddp(90)
    assert result["status"].startswith("failed")
    assert result["comparison"]["differing"] == ["generator.conv.weight"]
    assert not gc.part_ok(result)
    monkeypatch.setattr(gc, "run_commands", FakeTorchrun(say_resumed=False))
    result = gc.run_ddp(90)
    assert result["status"].startswith("failed") and "resumed" in result["status"]


def test_bit_for_bit_comparison_flags_a_single_differing_tensor(gc, tmp_path):
    a = fake_checkpoint(4)
    b = copy.deepcopy(a)
    count, diffs = gc.differing_tensors(a, b)
    assert (count, diffs) == (6, [])  # a separate copy of the same values: nothing differs
    b["ranks"][1]["rng"]["torch"][5] += 1
    assert gc.differing_tensors(a, b) == (6, ["ranks[1].rng.torch"])

    c = copy.deepcopy(a)
    c["optimizers"]["generator"]["state"][0]["exp_avg"][0, 0] *= -1
    assert gc.differing_tensors(a, c)[1] == ["optimizers.generator.state.0.exp_avg"]

    # bit for bit, not ==: -0.0 differs from 0.0, the same NaN equals itself
    zero, nan = {"t": torch.tensor([0.0, float("nan")])}, {"t": torch.tensor([-0.0, float("nan")])}
    assert gc.differing_tensors(zero, copy.deepcopy(zero))[1] == []
    assert gc.differing_tensors(zero, nan)[1] == ["t"]
    # another dtype, a missing key, a tensor against a plain value
    zeros = {"t": torch.zeros(2)}
    assert gc.differing_tensors(zeros, {"t": torch.zeros(2, dtype=torch.float64)})[1] == ["t"]
    assert gc.differing_tensors({**zeros, "u": torch.ones(1)}, zeros)[1] == ["u: on one side only"]
    assert gc.differing_tensors(zeros, {"t": [0.0, 0.0]})[1] == ["t: a tensor on one side only"]

    torch.save(a, tmp_path / "a.pt")
    torch.save(fake_checkpoint(4, tamper=True), tmp_path / "b.pt")
    found = gc.compare_checkpoints(tmp_path / "a.pt", tmp_path / "b.pt")
    assert found["n_differing"] == 1 and found["differing"] == ["generator.conv.weight"]


# -- the report and the exit status ---------------------------------------------------------


FAKE_DEVICE = {"device": "fake GPU", "gpus": 1, "torch": "t", "cuda": "c"}


def benchmark_rows(peak_gb: float = 30.0) -> dict:
    """A benchmark report with the rows the targets are read from."""
    return {"rows": [
        {"dataset": "deepfashion", "model": "xinggan", "batch": 32, "amp": "bf16",
         "attention": "auto", "g_eval": {"images_per_s": 400.0},
         "iteration": {"peak_memory_gb": peak_gb, "projected": {"hours": 4.0}}},
        {"dataset": "market", "model": "xinggan", "batch": 32, "amp": "bf16",
         "attention": "auto", "g_eval": {"images_per_s": 2500.0},
         "iteration": {"peak_memory_gb": 12.0, "projected": {"hours": 5.0}}}]}


def read_report(out: Path) -> dict:
    return json.loads(Path(f"{out}.json").read_text())


def test_report_is_rewritten_after_each_part(gc, tmp_path, monkeypatch):
    out = tmp_path / "report"
    seen = {}

    def fake_part(part):
        seen[part["name"]] = read_report(out)["parts"]  # what is on disk when the part starts
        if part["name"] == "sdpa":
            raise KeyboardInterrupt  # as if the run were stopped from outside here
        return {"status": "passed" if part["name"] == "tests" else "skipped: needs 2 or more GPUs",
                "seconds": 1.0}

    monkeypatch.setattr(gc, "device_report", lambda: dict(FAKE_DEVICE))
    monkeypatch.setattr(gc, "run_part", fake_part)
    with pytest.raises(KeyboardInterrupt):
        gc.main(["--out", str(out)])
    assert seen["tests"]["tests"]["status"].startswith("running")
    assert seen["ddp"]["tests"]["status"] == "passed"  # written before the next part started
    assert seen["sdpa"]["ddp"]["status"] == "skipped: needs 2 or more GPUs"
    assert seen["sdpa"]["sdpa"]["status"].startswith("running")  # a SIGKILL would leave this
    report = read_report(out)
    assert [report["parts"][n]["status"] for n in ("tests", "ddp", "sdpa", "benchmark")] == [
        "passed", "skipped: needs 2 or more GPUs", "interrupted", "not run yet"]
    assert report["finished"] is False
    md = Path(f"{out}.md").read_text()
    assert "| tests | passed |" in md and "not finished" in md


def test_a_part_that_raises_fails_the_run_and_the_rest_still_runs(gc, tmp_path, monkeypatch):
    out = tmp_path / "report"
    ran = []

    def fake_part(part):
        ran.append(part["name"])
        if part["name"] == "ddp":
            raise RuntimeError("NCCL error")
        if part["name"] == "benchmark":
            Path(f"{out}_benchmark.json").write_text(json.dumps(benchmark_rows()))
        return {"status": "passed"}

    monkeypatch.setattr(gc, "device_report", lambda: dict(FAKE_DEVICE))
    monkeypatch.setattr(gc, "run_part", fake_part)
    assert gc.main(["--out", str(out)]) == 1
    assert ran == ["tests", "ddp", "sdpa", "benchmark"]
    report = read_report(out)
    assert report["parts"]["ddp"]["status"] == "failed (RuntimeError: NCCL error)"
    assert {t["status"] for t in report["targets"]} == {"met"}
    assert report["finished"] is True


@pytest.mark.parametrize("peak_gb,code", [(30.0, 0), (41.0, 1)])
def test_a_missed_target_gives_a_nonzero_exit_status(gc, tmp_path, monkeypatch, peak_gb, code):
    out = tmp_path / "report"

    def fake_part(part):
        if part["name"] == "benchmark":
            Path(f"{out}_benchmark.json").write_text(json.dumps(benchmark_rows(peak_gb)))
        return {"status": "passed"}

    monkeypatch.setattr(gc, "device_report", lambda: dict(FAKE_DEVICE))
    monkeypatch.setattr(gc, "run_part", fake_part)
    assert gc.main(["--out", str(out)]) == code
    targets = {t["target"]: t["status"] for t in read_report(out)["targets"]}
    assert targets["deepfashion_train_peak_gb"] == ("met" if code == 0 else "missed")
    assert [s for n, s in targets.items() if n != "deepfashion_train_peak_gb"] == ["met"] * 3
    assert ("FAILED" in Path(f"{out}.md").read_text()) == bool(code)


def test_targets_of_an_earlier_run_are_not_read(gc, tmp_path, monkeypatch):
    """A benchmark that writes nothing leaves the targets unmeasured (non-zero exit), even
    with a met report of an earlier run at the same path."""
    out = tmp_path / "report"
    Path(f"{out}_benchmark.json").write_text(json.dumps(benchmark_rows()))
    monkeypatch.setattr(gc, "device_report", lambda: dict(FAKE_DEVICE))
    monkeypatch.setattr(gc, "run_part", lambda part: {"status": "passed"})
    assert gc.main(["--out", str(out)]) == 1
    assert {t["status"] for t in read_report(out)["targets"]} == {"not measured"}


def test_failures_lists_parts_and_targets(gc):
    report = {"parts": {"tests": {"status": "passed"},
                        "ddp": {"status": "skipped: needs 2 or more GPUs"},
                        "sdpa": {"status": "stopped after 30 s"}},
              "targets": gc.check_targets(Path("/nonexistent/benchmark.json"))}
    bad = gc.failures(report)
    assert bad[0] == "part sdpa: stopped after 30 s"
    assert len(bad) == 1 + len(gc.TARGETS)
