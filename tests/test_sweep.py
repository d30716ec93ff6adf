"""scripts/sweep.py: one ablation sweep of two tiny variants through submitit's local executor
(a requeue after SIGUSR2 included), the tables and --status; the job's signal handling with a
stand-in train.py; the Slurm submission through stand-in sbatch / squeue (and a real one-node
Slurm where one answers); bad input refused in one line before anything is launched."""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit

from xinggan.checkpoint import load_checkpoint
from xinggan.config import load_config
from xinggan.sweep.ablation import SweepError, definition, plan_variants, read_json, status_lines, write_definition
from xinggan.sweep.jobs import VariantFailed, VariantJob, export_distributed_env
from xinggan.sweep.launch import local_gpus
from xinggan.training import distributed_context

from helpers import load_script, tiny_training_overrides

REPO = Path(__file__).resolve().parents[1]
SWEEP = [sys.executable, str(REPO / "scripts" / "sweep.py")]
ITERATIONS = 6
OVERLAY = "configs/ablations/sa_only.yaml"
sweep = load_script("sweep")


def sweep_sets(root: Path, **extra) -> list[str]:
    return tiny_training_overrides(root, **{"train.iterations": ITERATIONS, "train.checkpoint_every": 1000,
                                            **extra})


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    assert pid > 1
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found



@pytest.fixture(autouse=True)
def environment_as_it_was():
    """The jobs run in this process export torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR...);
    they must not reach the tests that come after."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)

@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


# -- one local sweep: base (stopped by SIGUSR2 once, requeued) and seed1 ---------------------------------


@pytest.fixture(scope="module")
def local_sweep(tiny_data, tmp_path_factory):
    """base and seed1 (another initialisation: after a few iterations of the tiny model, an
    ablation overlay changes no pixel yet, another seed does)."""
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "seed1.yaml").write_text("train:\n  seed: 1\n")
    out = folder / "toy_ablation"
    args = ["--base", "configs/toy.yaml", "--overlays", str(folder / "seed1.yaml"), "--set", *sweep_sets(tiny_data),
            "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # 2 shared cores
    proc = subprocess.Popen(SWEEP + args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    signalled, deadline = None, time.time() + 300
    while signalled is None and time.time() < deadline and proc.poll() is None:
        stats, job = out / "base" / "stats.jsonl", read_json(out / "base" / "variant.json").get("train_job")
        if job and stats.is_file() and len(stats.read_text().splitlines()) >= 2:  # trained 2 iterations
            task = children(int(job))
            if task:  # the job's task under its local controller: SIGUSR2 as Slurm sends it
                os.kill(task[0], signal.SIGUSR2)
                signalled = task[0]
        time.sleep(0.05)
    output, _ = proc.communicate(timeout=max(10, deadline - time.time()))
    return {"out": out, "args": args, "output": output, "code": proc.returncode, "signalled": signalled,
            "root": tiny_data}


def test_local_sweep_scores_both_variants_and_writes_the_tables(local_sweep):
    out, output = local_sweep["out"], local_sweep["output"]
    assert local_sweep["code"] == 0, output
    pairs = (local_sweep["root"] / "market-pairs-test.csv").read_text().strip().splitlines()[1:]
    metrics = {}
    for name in ("base", "seed1"):
        assert load_checkpoint(out / name / "checkpoints" / "latest.pt")["iteration"] == ITERATIONS
        assert len(list((out / name / "results" / "images").glob("*.png"))) == len(pairs)
        metrics[name] = json.loads((out / name / "results" / "metrics.json").read_text())
        assert read_json(out / name / "variant.json")["metrics"]["ssim"] == metrics[name]["ssim"]
    expected = load_config([REPO / "configs/toy.yaml", out.parent / "seed1.yaml"], sweep_sets(local_sweep["root"]))
    assert load_config(out / "seed1" / "config.yaml") == expected and expected.train.seed == 1
    assert metrics["base"]["ssim"] != metrics["seed1"]["ssim"]  # the best marks below can tell them apart

    md = (out / "ablation.md").read_text().splitlines()
    assert "| variant | SSIM ↑ | mask-SSIM ↑ | L1 ↓ |" in md
    rows = [line for line in md if line.startswith("| ") and not line.startswith("| variant")]
    assert [r.split(" | ")[0] for r in rows] == ["| base (toy)", "| seed1"]
    best = {}
    for i, (key, pick) in enumerate((("ssim", max), ("mask_ssim", max), ("l1", min))):
        printed = {n: f"{metrics[n][key]:.3f}" for n in ("base", "seed1")}
        best[key] = {n for n in printed if float(printed[n]) == pick(map(float, printed.values()))}
        for n, row in zip(printed, rows):
            assert row.strip("| ").split(" | ")[1 + i] == (f"**{printed[n]}**" if n in best[key] else printed[n])
    table = list(csv.DictReader(io.StringIO((out / "ablation.csv").read_text())))
    assert [r["variant"] for r in table] == ["base (toy)", "seed1"]
    for n, r in zip(("base", "seed1"), table):
        assert float(r["L1"]) == metrics[n]["l1"]
        assert set(filter(None, r["best"].split(";"))) == {
            label for key, label in (("ssim", "SSIM"), ("mask_ssim", "mask-SSIM"), ("l1", "L1")) if n in best[key]}
    tex = (out / "ablation.tex").read_text()
    assert "seed1 & " in tex and tex.count("\\textbf{") == sum(map(len, best.values()))


def test_a_signalled_job_is_requeued_and_resumes(local_sweep):
    """SIGUSR2 to the base's training job: train.py saves and exits, submitit requeues the job
    (the same job id) and train.py resumes from the checkpoint."""
    out = local_sweep["out"]
    assert local_sweep["signalled"], local_sweep["output"]
    log = (out / "base" / "train.log").read_text()
    resumed = re.findall(r"resumed from .* at iteration (\d+)", log)
    assert len(resumed) == 1 and 0 < int(resumed[0]) < ITERATIONS, log
    job = read_json(out / "base" / "variant.json")["train_job"]
    assert "Caught signal SIGUSR2" in (out / "submitit" / f"{job}_0_log.err").read_text()
    assert log.count("train.py --run-dir") == 2  # started twice by the same job: requeued by submitit,
    assert len(list((out / "submitit").glob("*_submitted.pkl"))) == 4  # not submitted again
    assert "resumed from" not in (out / "seed1" / "train.log").read_text()


def test_starting_again_launches_nothing(local_sweep, capsys, in_repo):
    out = local_sweep["out"]
    jobs = sorted((out / "submitit").glob("*_submitted.pkl"))
    assert sweep.main(local_sweep["args"]) == 0
    assert "2 done, 0 queued or running, 0 to run" in capsys.readouterr().out
    # where-things-are settings may change between two starts; still nothing to run
    assert sweep.main(local_sweep["args"] + ["--set", "eval.allow_missing_metrics=true", "data.num_workers=1"]) == 0
    assert "0 to run" in capsys.readouterr().out
    assert sorted((out / "submitit").glob("*_submitted.pkl")) == jobs
    assert "allow_missing_metrics: true" in (out / "base" / "config.yaml").read_text()


def test_status_of_the_finished_sweep(local_sweep, capsys):
    out = local_sweep["out"]
    assert sweep.main(["--status", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ("base", "seed1"):
        m = json.loads((out / name / "results" / "metrics.json").read_text())
        line = next(x for x in lines if x.startswith(name + " "))
        assert line.split()[1:3] == ["done", f"{ITERATIONS}/{ITERATIONS}"], line
        assert f"SSIM {m['ssim']:.3f}" in line and f"L1 {m['l1']:.3f}" in line
    assert lines[-2:] == ["2 done", "tables: " + ", ".join(str(out / n) for n in ("ablation.md", "ablation.csv",
                                                                                  "ablation.tex"))]


# -- a job's steps with stand-ins for train.py and test.py ----------------------------------------------


@pytest.fixture
def toy_sweep(tmp_path, tiny_data, monkeypatch, in_repo):
    """A sweep folder (base, sa_only) and the environment of task 0 of a one-task local job."""
    out = tmp_path / "s"
    variants = plan_variants("configs/toy.yaml", [OVERLAY], sweep_sets(tiny_data))
    write_definition(out, definition(out, "configs/toy.yaml", [], variants), variants)
    for key, value in {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "4242", "SUBMITIT_LOCAL_NTASKS": "1",
                       "SUBMITIT_LOCAL_GLOBALID": "0", "SUBMITIT_LOCAL_LOCALID": "0"}.items():
        monkeypatch.setenv(key, value)
    return out


def stand_in(monkeypatch, tmp_path, script: str, code: str) -> None:
    """The job runs ``script`` (train.py, test.py) from a folder holding only this code."""
    (tmp_path / "repo").mkdir(exist_ok=True)
    (tmp_path / "repo" / script).write_text("import json, os, signal, sys, time\n" + code)
    monkeypatch.setattr("xinggan.sweep.jobs.REPO", tmp_path / "repo")


def test_sigusr2_reaches_train_py_and_the_step_is_requeued(toy_sweep, tmp_path, monkeypatch):
    """SIGUSR2 arrives while the job waits for train.py: the handler (as submitit's calls
    checkpoint()) passes it on, waits for train.py to exit and returns the same step."""
    stand_in(monkeypatch, tmp_path, "train.py", """
run = sys.argv[sys.argv.index("--run-dir") + 1]
def stop(signum, frame):
    json.dump({"state": "stopped", "iteration": 3, "iterations": 6, "time": time.time(),
               "by": signal.Signals(signum).name}, open(run + "/status.json", "w"))
    sys.exit(0)
signal.signal(signal.SIGUSR2, stop)
os.kill(os.getppid(), signal.SIGUSR2)
time.sleep(60)
""")
    job, requeued = VariantJob(str(toy_sweep), "base", "train"), []
    previous = signal.signal(signal.SIGUSR2, lambda *_: requeued.append(job.checkpoint()))
    try:
        with pytest.raises(VariantFailed, match="stopped at iteration 3 of 6"):
            job()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert read_json(toy_sweep / "base" / "status.json")["by"] == "SIGUSR2"
    assert isinstance(requeued[0], submitit.helpers.DelayedSubmission)
    again = requeued[0].function
    assert (type(again), again.out, again.name, again.step) == (VariantJob, str(toy_sweep), "base", "train")
    assert "error" not in read_json(toy_sweep / "base" / "variant.json")  # a stop, not a failure


def test_a_failing_step_records_its_error_and_log(toy_sweep, tmp_path, monkeypatch, capsys):
    stand_in(monkeypatch, tmp_path, "train.py", "print('step 1')\nprint('error: data/x.jpg: unreadable')\nsys.exit(2)\n")
    with pytest.raises(VariantFailed, match="train.py exited with status 2"):
        VariantJob(str(toy_sweep), "sa_only", "train")()
    record = read_json(toy_sweep / "sa_only" / "variant.json")
    assert record["tail"][-1] == "error: data/x.jpg: unreadable" and record["log"].endswith("train.log")
    with pytest.raises(VariantFailed, match=f"not trained to iteration {ITERATIONS}"):
        VariantJob(str(toy_sweep), "base", "score")()  # no status.json: never trained
    lines = status_lines(toy_sweep)
    failed = next(x for x in lines if x.startswith("sa_only "))
    assert failed.split()[1:3] == ["failed", f"0/{ITERATIONS}"] and "status 2" in failed
    below = lines[lines.index(failed) + 1:lines.index(failed) + 4]  # the end of train.log
    assert f"train.py --run-dir {toy_sweep / 'sa_only'} --resume --config " in below[0]  # the command line
    assert [x.split("| ", 1)[1] for x in below[1:]] == ["step 1", "error: data/x.jpg: unreadable"]


def test_scoring_records_the_metrics_and_status_reads_train_py_status(toy_sweep, tmp_path, monkeypatch):
    stand_in(monkeypatch, tmp_path, "test.py", """
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out, exist_ok=True)
json.dump({"protocol": "toy", "ssim": 0.25, "mask_ssim": 0.5, "l1": 0.125, "skipped": {}}, open(out + "/metrics.json", "w"))
""")
    status = {"state": "done", "iteration": ITERATIONS, "iterations": ITERATIONS, "time": time.time()}
    (toy_sweep / "base" / "status.json").write_text(json.dumps(status))
    (toy_sweep / "sa_only" / "status.json").write_text(json.dumps({**status, "state": "running", "iteration": 4}))
    assert VariantJob(str(toy_sweep), "base", "score")() == {"ssim": 0.25, "mask_ssim": 0.5, "l1": 0.125}
    lines = status_lines(toy_sweep)
    assert lines[1].split()[:5] == ["base", "done", f"{ITERATIONS}/{ITERATIONS}", "SSIM", "0.250"]
    assert lines[2].split()[:3] == ["sa_only", "running", f"4/{ITERATIONS}"]
    assert lines[-1] == "1 done, 1 running" and not (toy_sweep / "ablation.md").exists()


def test_each_task_of_a_multi_gpu_job_gets_torchruns_variables(monkeypatch):
    """Task 2 of a 4-task Slurm job: the variables train.py reads as under torchrun."""
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "77", "SLURM_NTASKS": "4",
                       "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0", "SLURM_PROCID": "2", "SLURM_LOCALID": "2",
                       "SLURM_JOB_NODELIST": "gpu[3-4]"}.items():
        monkeypatch.setenv(key, value)
    export_distributed_env()
    env = {k: os.environ[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    assert env["RANK"] == "2" and env["LOCAL_RANK"] == "2" and env["WORLD_SIZE"] == "4"
    assert env["MASTER_ADDR"] == "gpu3" and 20000 <= int(env["MASTER_PORT"]) <= 60000
    assert distributed_context() == (2, 2, 4)
    monkeypatch.setenv("SLURM_JOB_ID", "78")  # another job: another port; the same job id after a requeue
    monkeypatch.delenv("MASTER_PORT")
    export_distributed_env()
    assert os.environ["MASTER_PORT"] != env["MASTER_PORT"]
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv("MASTER_PORT")
    export_distributed_env()
    assert os.environ["MASTER_PORT"] == env["MASTER_PORT"]
    for key in env:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SLURM_NTASKS", "1")  # one task: nothing set
    export_distributed_env()
    assert not any(key in os.environ for key in env)


# -- bad input: one line, nothing launched --------------------------------------------------------------


def one_line_error(args, capsys, *fragments: str) -> str:
    assert sweep.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def test_bad_overlays(tmp_path, capsys, in_repo):
    out = tmp_path / "out"
    base = ["--base", "configs/toy.yaml", "--out", str(out), "--overlays"]
    one_line_error(base + ["configs/ablations/nope.yaml"], capsys, "configs/ablations/nope.yaml", "not found")
    typo = tmp_path / "typo.yaml"
    typo.write_text("# an ablation\nmodel:\n  generator:\n    shape_updat: false\n")
    one_line_error(base + [str(typo)], capsys, f"{typo}:4", "model.generator.shape_updat", "shape_update")
    other_eval = tmp_path / "other_eval.yaml"
    other_eval.write_text("eval:\n  protocol: patn-market\n")
    one_line_error(base + [str(other_eval)], capsys, str(other_eval), "eval.protocol")
    one_line_error(base + [OVERLAY, OVERLAY], capsys, "a second variant named 'sa_only'")
    assert not out.exists()


def test_out_holding_another_sweep(tmp_path, capsys, in_repo):
    out = tmp_path / "out"
    first = plan_variants("configs/toy.yaml", [OVERLAY])
    write_definition(out, definition(out, "configs/toy.yaml", [], first), first)
    before = sorted(p.name for p in out.iterdir())
    one_line_error(["--base", "configs/toy.yaml", "--overlays", "configs/ablations/as_only.yaml", "--out", str(out)],
                   capsys, str(out), "another sweep", "sa_only", "as_only")
    one_line_error(["--base", "configs/toy.yaml", "--overlays", OVERLAY, "--set", "train.iterations=7", "--out",
                    str(out)], capsys, "another sweep", "train.iterations")
    assert sorted(p.name for p in out.iterdir()) == before
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    one_line_error(["--base", "configs/toy.yaml", "--out", str(tmp_path / "busy")], capsys, "not a sweep folder")


def test_one_sweep_command_per_folder(tmp_path, capsys, in_repo):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / "sweep.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        one_line_error(["--base", "configs/toy.yaml", "--out", str(out)], capsys, "another scripts/sweep.py")
    assert not (out / "submitit").exists()


def test_launcher_options(tmp_path, capsys, monkeypatch, in_repo):
    out = tmp_path / "out"
    base = ["--base", "configs/toy.yaml", "--out", str(out)]
    one_line_error(base + ["--launcher", "pbs"], capsys, "--launcher", "'pbs'")
    one_line_error(base + ["--partition", "gpu", "--time", "60"], capsys, "--time, --partition", "without --launcher slurm")
    one_line_error(base + ["--slurm-extra", "constraint=a100"], capsys, "--slurm-extra")
    one_line_error(base + ["--launcher", "slurm", "--time", "1:30:00", "--gpus-per-node", "1"], capsys, "'1:30:00'")
    # Slurm needs a time limit and a GPU count, asked before anything else (sbatch is not looked for)
    monkeypatch.setenv("PATH", str(tmp_path))
    one_line_error(base + ["--launcher", "slurm"], capsys, "needs --time and --gpus-per-node")
    one_line_error(base + ["--launcher", "slurm", "--gpus-per-node", "0"], capsys, "needs --time (")
    one_line_error(base + ["--launcher", "slurm", "--gpus-per-node", "0", "--time", "90"], capsys, "sbatch")
    assert not out.exists()


def test_local_gpus(tmp_path, capsys, monkeypatch, in_repo):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5")
    assert local_gpus() == [2, 3, 5]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8d7e")
    with pytest.raises(SweepError, match="GPU numbers"):
        local_gpus()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    one_line_error(["--base", "configs/toy.yaml", "--out", str(tmp_path / "out"), "--gpus-per-node", "2"], capsys,
                   "--gpus-per-node 2", "1 GPU")


# -- Slurm --------------------------------------------------------------------------------------------------

FAKE_SBATCH = """#!/bin/sh
n=$(($(ls "$FAKE_SLURM"/*.sh 2>/dev/null | wc -l) + 100))
cp "$1" "$FAKE_SLURM/$n.sh"
echo "Submitted batch job $n"
"""


def sbatch_directives(text: str) -> dict:
    return {m[0]: m[2] or True for m in re.findall(r"^#SBATCH --([\w-]+)(=(\S+))?$", text, re.MULTILINE)}


def test_slurm_array_then_dependent_scoring_jobs(tmp_path, tiny_data, capsys, monkeypatch, in_repo):
    """Through stand-ins for sbatch, srun and squeue: one training array of 3 variants with one
    task per GPU, then one 1-GPU scoring job per variant that waits for its training task."""
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "srun").write_text("#!/bin/sh\n")
    (bin_dir / "squeue").write_text("#!/bin/sh\ncat \"$FAKE_SLURM/queue\" 2>/dev/null\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(tmp_path))
    args = ["--base", "configs/toy.yaml", "--overlays", OVERLAY, "configs/ablations/as_only.yaml",
            "configs/ablations/shared_projections.yaml", "--set", *sweep_sets(tiny_data), "--out", str(out),
            "--launcher", "slurm", "--gpus-per-node", "4", "--time", "2160", "--partition", "gpu",
            "--mem", "200G", "--array-parallelism", "2", "--signal-delay", "180",
            "--slurm-extra", "constraint=a100", "qos=high", "exclusive"]
    assert sweep.main(args) == 0
    printed = capsys.readouterr().out
    assert "shared_projections.yaml changes nothing" in printed and "3 to run base sa_only as_only" in printed
    files = {int(p.stem): p.read_text() for p in tmp_path.glob("*.sh")}
    assert sorted(files) == [100, 101, 102, 103]  # the array, then 3 scoring jobs
    train = sbatch_directives(files[100])
    assert train["array"] == "0-2%2" and train["gpus-per-node"] == "4" and train["ntasks-per-node"] == "4"
    assert train["time"] == "2160" and train["signal"] == "USR2@180" and train["requeue"] is True
    assert train["cpus-per-task"] == "2"  # the base's data.num_workers (0 here) + 2
    assert (train["partition"], train["mem"], train["constraint"], train["qos"], train["exclusive"]) == \
        ("gpu", "200G", "a100", "high", True)
    for i, name in enumerate(("base", "sa_only", "as_only")):
        score = sbatch_directives(files[101 + i])
        assert score["dependency"] == f"afterok:100_{i}" and score["kill-on-invalid-dep"] == "yes"
        assert score["gpus-per-node"] == "1" and score["ntasks-per-node"] == "1" and "array" not in score
        assert read_json(out / name / "variant.json") == {"launcher": "slurm", "train_job": f"100_{i}",
                                                          "score_job": str(101 + i)}
    (tmp_path / "queue").write_text("100_0\n100_1\n100_2\n101\n102\n103\n")
    assert sweep.main(args) == 0  # started again while all are queued: nothing submitted
    assert "3 queued or running, 0 to run" in capsys.readouterr().out and len(list(tmp_path.glob("*.sh"))) == 4


def _slurm_answers() -> bool:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return False
    try:
        run = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in run.stdout.split())


@pytest.mark.skipif(not _slurm_answers(), reason="no Slurm answers here (sinfo); scripts/ci_slurm.sh starts one")
def test_real_slurm_sweep(tiny_data, tmp_path):
    """Base + one overlay on a real Slurm: a training array, dependent scoring jobs, the tables."""
    out = tmp_path / "slurm_sweep"
    cmd = SWEEP + ["--base", "configs/toy.yaml", "--overlays", OVERLAY, "--set",
                   *sweep_sets(tiny_data, **{"train.iterations": 3}), "--out", str(out), "--launcher", "slurm",
                   "--cpus-per-task", "1", "--time", "15", "--gpus-per-node", "0"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    ids = [read_json(out / n / "variant.json")["train_job"] for n in ("base", "sa_only")]
    assert ids == [f"{ids[0].split('_')[0]}_0", f"{ids[0].split('_')[0]}_1"]
    deadline = time.time() + 400
    while time.time() < deadline and not (out / "ablation.md").is_file():
        lines = status_lines(out)  # writes the tables once both are scored
        if any(" failed " in line for line in lines):
            break
        time.sleep(2)
    assert (out / "ablation.md").is_file(), "\n".join(status_lines(out))
