"""scripts/sweep.py: ablation sweeps through submitit's real local executor (and a real one-node
Slurm where one answers), requeue after a stop signal with exact resume, the tables, --status,
the sbatch file of the Slurm path, and bad input refused before anything is launched."""
from __future__ import annotations

import csv
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
import torch

from xinggan.checkpoint import load_checkpoint
from xinggan.config import load_config

from helpers import tiny_training_overrides

REPO = Path(__file__).resolve().parents[1]
SWEEP = [sys.executable, str(REPO / "scripts" / "sweep.py")]
# dropout in every network and a 2-image pool: an exact resume has random state to restore
RANDOM = {"model.generator.dropout": 0.5, "model.discriminator.dropout": 0.5, "loss.pool_size": 2}
ITERATIONS = 24
OVERLAYS = ["configs/ablations/sa_only.yaml", "configs/ablations/as_only.yaml"]
# The base's training with its image interval spelled out: image_every 0 means "at every
# checkpoint", which is every 1000 iterations here. Another config, the same run: the
# uninterrupted twin of the base.
TWIN = "train:\n  image_every: 1000\n"


def job_env() -> dict:
    # one thread per process: the 2 shared cores are then not fought over by OpenMP teams
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def sweep_sets(root: Path, **extra) -> list[str]:
    return tiny_training_overrides(root, **{**RANDOM, "train.iterations": ITERATIONS,
                                            "train.checkpoint_every": 1000, **extra})


def read_state(run_dir: Path) -> dict:
    return json.loads((run_dir / "state.json").read_text())


def stats_lines(run_dir: Path) -> int:
    try:
        return len((run_dir / "stats.jsonl").read_text().splitlines())
    except OSError:
        return 0


def submitted_jobs(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "submitit").glob("*_submitted.pkl"))


# -- a sweep of the toy config on this machine, one variant interrupted --------------------------


@pytest.fixture(scope="module")
def local_sweep(tiny_data, tmp_path_factory):
    """base + sa_only + twin (TWIN: the base's run under another config), 3 at a time through submitit's local executor. Once the
    base has trained 2 iterations its job gets SIGUSR2, as Slurm sends before a time limit."""
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "twin.yaml").write_text(TWIN)
    out = folder / "toy_ablation"
    overlays = [OVERLAYS[0], str(folder / "twin.yaml")]
    cmd = SWEEP + ["--base", "configs/toy.yaml", "--overlays", *overlays, "--set",
                   *sweep_sets(tiny_data), "--out", str(out), "--parallel", "3"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=job_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    signalled = None
    deadline = time.time() + 400
    base = out / "base"
    while time.time() < deadline and proc.poll() is None:
        if (base / "state.json").is_file() and stats_lines(base) >= 2:
            state = read_state(base)
            if state.get("state") == "running" and state.get("pid"):
                os.kill(state["pid"], signal.SIGUSR2)
                signalled = state["pid"]
                break
        time.sleep(0.05)
    output, _ = proc.communicate(timeout=max(10, deadline - time.time()))
    return {"out": out, "cmd": cmd, "output": output, "code": proc.returncode, "signalled": signalled,
            "root": tiny_data, "overlays": overlays}


def test_local_sweep_scores_every_variant_and_writes_the_tables(local_sweep):
    out, output = local_sweep["out"], local_sweep["output"]
    assert local_sweep["code"] == 0, output
    pairs = (local_sweep["root"] / "market-pairs-test.csv").read_text().strip().splitlines()[1:]
    metrics = {}
    for name in ("base", "sa_only", "twin"):
        run = out / name
        state = read_state(run)
        assert state["state"] == "done", (name, state)
        assert (run / "config.yaml").is_file() and (run / "checkpoints" / "latest.pt").is_file()
        assert load_checkpoint(run / "checkpoints" / "latest.pt")["iteration"] == ITERATIONS
        assert len(list((run / "results" / "images").glob("*.png"))) == len(pairs)
        metrics[name] = json.loads((run / "results" / "metrics.json").read_text())
        assert metrics[name]["protocol"] == "toy"
    # each variant's resolved config is its overlay over the base, with the --set values
    sets = sweep_sets(local_sweep["root"])
    for name, overlay in zip(("sa_only", "twin"), local_sweep["overlays"]):
        expected = load_config([REPO / "configs/toy.yaml", REPO / overlay], sets)
        assert load_config(out / name / "config.yaml") == expected
    assert load_config(out / "sa_only" / "config.yaml").model.generator.shape_update is False

    # Markdown: the toy protocol's columns with their directions, the base first, best in bold
    md = (out / "ablation.md").read_text().splitlines()
    header = next(line for line in md if line.startswith("| variant"))
    assert header == "| variant | SSIM ↑ | mask-SSIM ↑ | L1 ↓ |"
    rows = [line for line in md if line.startswith("| ") and not line.startswith("| variant")]
    assert [r.split(" | ")[0] for r in rows] == ["| base (toy)", "| sa_only", "| twin"]
    names = ["base", "sa_only", "twin"]
    best = {}
    for key, pick in (("ssim", max), ("mask_ssim", max), ("l1", min)):
        printed = {n: f"{metrics[n][key]:.3f}" for n in names}
        top = pick(float(v) for v in printed.values())
        best[key] = {n for n in names if float(printed[n]) == top}
        for n, row in zip(names, rows):
            cell = row.strip("| ").split(" | ")[1 + ["ssim", "mask_ssim", "l1"].index(key)]
            assert cell == (f"**{printed[n]}**" if n in best[key] else printed[n]), (n, key, row)
    # CSV: full-precision numbers and the 'best' column
    table = list(csv.DictReader(io.StringIO((out / "ablation.csv").read_text())))
    assert [r["variant"] for r in table] == ["base (toy)", "sa_only", "twin"]
    for n, r in zip(names, table):
        assert float(r["SSIM"]) == metrics[n]["ssim"] and float(r["L1"]) == metrics[n]["l1"]
        marked = set(filter(None, r["best"].split(";")))
        assert marked == {label for key, label in (("ssim", "SSIM"), ("mask_ssim", "mask-SSIM"), ("l1", "L1"))
                          if n in best[key]}
    # LaTeX (booktabs): one row per variant, escaped names, bold where the Markdown is
    tex = (out / "ablation.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "sa\\_only & " in tex and "twin & " in tex
    assert tex.count("\\textbf{") == sum(len(v) for v in best.values())


def test_a_signalled_job_is_requeued_and_resumes_exactly(local_sweep):
    """SIGUSR2 to the base's job mid-training: the trainer saves, submitit requeues the job
    (the local controller restarts it), it resumes from the checkpoint, and its generator ends
    bit for bit equal to the same training without a stop (twin)."""
    out = local_sweep["out"]
    assert local_sweep["signalled"], "the base job was never seen running"
    log = (out / "base" / "train.log").read_text()
    resumed = re.findall(r"resumed from .* at iteration (\d+)", log)
    assert len(resumed) == 1 and 0 < int(resumed[0]) < ITERATIONS, log
    assert f"stopped at iteration {resumed[0]}" in log
    state = read_state(out / "base")
    assert state["attempts"] == 2
    assert any("requeued after SIGUSR2 during training" in e for e in state["events"])
    submitit_log = "".join(p.read_text() for p in (out / "submitit").glob(f"{state['job_id']}_0_log.*"))
    assert "Requeued job" in submitit_log  # submitit's own requeue, not a new submission
    assert "resumed from" not in (out / "twin" / "train.log").read_text()

    base_cfg, twin_cfg = load_config(out / "base" / "config.yaml"), load_config(out / "twin" / "config.yaml")
    assert base_cfg.replace("train.image_every=1000") == twin_cfg and base_cfg.train.image_every == 0
    assert base_cfg.train.checkpoint_every == 1000
    assert base_cfg.model.generator.dropout == 0.5 and base_cfg.loss.pool_size == 2
    a = load_checkpoint(out / "base" / "checkpoints" / "latest.pt")["generator"]
    b = load_checkpoint(out / "twin" / "checkpoints" / "latest.pt")["generator"]
    c = load_checkpoint(out / "sa_only" / "checkpoints" / "latest.pt")["generator"]
    assert a.keys() == b.keys() and len(a) > 50
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the comparison can fail: another variant's weights differ
    assert any(not torch.equal(a[k], c[k]) for k in a if k in c)


def test_starting_again_launches_nothing(local_sweep, capsys, monkeypatch):
    from xinggan.sweep.cli import main

    out = local_sweep["out"]
    jobs = submitted_jobs(out)
    states = {n: (out / n / "state.json").read_text() for n in ("base", "sa_only", "twin")}
    tables = {n: (out / n).read_text() for n in ("ablation.md", "ablation.csv", "ablation.tex")}
    monkeypatch.chdir(REPO)
    assert main(local_sweep["cmd"][2:]) == 0  # the same command line, in this process
    printed = capsys.readouterr().out
    assert "3 done, 0 running elsewhere, 0 to run" in printed
    assert submitted_jobs(out) == jobs and len(jobs) == 3  # no job submitted
    assert {n: (out / n / "state.json").read_text() for n in states} == states
    assert {n: (out / n).read_text() for n in tables} == tables
    # where-things-are settings may change between two starts (a weights path, the worker
    # count); still nothing to run
    assert main(local_sweep["cmd"][2:] + ["--set", "eval.allow_missing_metrics=true", "data.num_workers=1"]) == 0
    assert "0 to run" in capsys.readouterr().out and submitted_jobs(out) == jobs
    assert "allow_missing_metrics: true" in (out / "base" / "config.yaml").read_text()


def test_status_of_the_finished_sweep(local_sweep, capsys):
    from xinggan.sweep.cli import main

    out = local_sweep["out"]
    assert main(["--status", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ("base", "sa_only", "twin"):
        m = json.loads((out / name / "results" / "metrics.json").read_text())
        line = next(x for x in lines if x.startswith(name + " "))
        assert line.split()[1:3] == ["done", f"{ITERATIONS}/{ITERATIONS}"], line
        assert f"SSIM {m['ssim']:.3f}" in line and f"L1 {m['l1']:.3f}" in line
    assert "3 done" in lines


# -- where a sweep stands, read cheaply ---------------------------------------------------------------


def test_status_reads_progress_without_checkpoints(tmp_path, tiny_data, in_repo):
    """--status takes the iteration from stats.jsonl (a checkpoint that is not even a valid
    file is never read) and shows a failure with the end of its log."""
    from xinggan.sweep.launch import status_lines
    from xinggan.sweep.plan import definition, plan_variants, write_definition, write_state

    out = tmp_path / "s"
    sets = sweep_sets(tiny_data)
    variants = plan_variants("configs/toy.yaml", OVERLAYS[:1], sets)
    write_definition(out, definition("configs/toy.yaml", OVERLAYS[:1], sets, variants, str(REPO)), variants)
    (out / "base" / "checkpoints").mkdir()
    (out / "base" / "checkpoints" / "latest.pt").write_bytes(b"not a checkpoint")
    with open(out / "base" / "stats.jsonl", "w") as handle:
        for it in range(1, 8):
            handle.write(json.dumps({"iteration": it, "g_l1": 1.0}) + "\n")
        handle.write('{"iteration": 8, "g_l')  # a line being written
    write_state(out / "base", state="running", phase="training", job_id="123", pid=os.getpid(),
                host=__import__("socket").gethostname(), launcher="local")
    write_state(out / "sa_only", state="failed", error="train.py exited with status 1",
                log_tail=["step 1", "error: data/x.jpg: unreadable image"], log=str(out / "sa_only" / "train.log"))
    lines = status_lines(out)
    base = next(x for x in lines if x.startswith("base "))
    assert base.split()[1:3] == ["running", f"7/{ITERATIONS}"] and "job 123" in base
    failed = next(x for x in lines if x.startswith("sa_only "))
    assert failed.split()[1:3] == ["failed", f"0/{ITERATIONS}"] and "status 1" in failed
    assert lines[lines.index(failed) + 2].endswith("| error: data/x.jpg: unreadable image")
    assert lines[-1] == "1 running, 1 failed"
    assert not (out / "ablation.md").exists()


def processes_mentioning(path: Path) -> list[str]:
    """Command lines of the live processes that name ``path`` (Linux /proc)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() + b"\0" in cmdline + b"\0" or (str(path) + "/").encode() in cmdline:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def test_a_failing_variant_records_the_end_of_its_log(tmp_path, tiny_data, monkeypatch, in_repo):
    """The job itself (as submitit's local task would run it): train.py fails, the state says
    so with the end of train.log, and the job raises so that submitit records a failure."""
    from xinggan.sweep.job import VariantJob
    from xinggan.sweep.plan import definition, plan_variants, write_definition

    out = tmp_path / "s"
    variants = plan_variants("configs/toy.yaml", [], sweep_sets(tiny_data))
    write_definition(out, definition("configs/toy.yaml", [], [], variants, str(REPO)), variants)
    (out / "base" / "config.yaml").write_text("model:\n  generator:\n    ngf: -3\n")  # broken by hand
    for key, value in {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "4242",
                       "SUBMITIT_LOCAL_NTASKS": "1", "SUBMITIT_LOCAL_GLOBALID": "0",
                       "SUBMITIT_LOCAL_LOCALID": "0", "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)}
    with pytest.raises(RuntimeError, match="train.py exited with status 2"):
        VariantJob(str(out), "base")()
    state = read_state(out / "base")
    assert state["state"] == "failed" and state["error"] == "train.py exited with status 2"
    assert "model.generator.ngf" in state["log_tail"][-1] and state["log"].endswith("train.log")
    assert state["job_id"] == "4242" and state["attempts"] == 1
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # put back


# -- stopped, then started again -----------------------------------------------------------------------


def test_stopped_sweep_saves_its_variants(tiny_data, tmp_path):
    """Ctrl-C (SIGINT to the sweep's process group): the running variant finishes its iteration
    and saves, its state says where it stopped, nothing is left running, and the command says
    how to resume."""
    out = tmp_path / "stopped"
    cmd = SWEEP + ["--base", "configs/toy.yaml", "--set", *sweep_sets(tiny_data, **{"train.iterations": 100000}),
                   "--out", str(out)]
    run_dir = out / "base"
    proc = subprocess.Popen(cmd, cwd=REPO, env=job_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and stats_lines(run_dir) < 2:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[0]
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, output
    assert "run the same command again to resume" in output
    state = read_state(run_dir)
    saved = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["iteration"]
    assert state["state"] == "waiting" and state["iteration"] == saved and saved >= 2
    assert "stopped by SIG" in state["note"] and f"stopped at iteration {saved}" in (run_dir / "train.log").read_text()
    assert processes_mentioning(run_dir) == []  # nothing left running


# -- bad input: one line, nothing launched --------------------------------------------------------------


def run_cli(args, capsys) -> tuple[int, str]:
    from xinggan.sweep.cli import main

    code = main(args)
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def test_missing_overlay(tmp_path, capsys, in_repo):
    out = tmp_path / "out"
    code, err = run_cli(["--base", "configs/toy.yaml", "--overlays", "configs/ablations/nope.yaml",
                         "--out", str(out)], capsys)
    assert_one_line_error(code, err, "configs/ablations/nope.yaml", "not found")
    assert not out.exists()


def test_invalid_overlay_names_file_line_and_key(tmp_path, capsys, in_repo):
    bad = tmp_path / "typo.yaml"
    bad.write_text("# an ablation\nmodel:\n  generator:\n    shape_updat: false\n")
    code, err = run_cli(["--base", "configs/toy.yaml", "--overlays", str(bad), "--out", str(tmp_path / "out")],
                        capsys)
    assert_one_line_error(code, err, f"{bad}:4", "model.generator.shape_updat", "shape_update")
    assert not (tmp_path / "out").exists()


def test_overlay_may_not_change_the_evaluation(tmp_path, capsys, in_repo):
    bad = tmp_path / "other_eval.yaml"
    bad.write_text("model:\n  generator:\n    fusion: false\neval:\n  protocol: patn-market\n")
    code, err = run_cli(["--base", "configs/toy.yaml", "--overlays", str(bad), "--out", str(tmp_path / "out")],
                        capsys)
    assert_one_line_error(code, err, "eval.protocol", f"{bad}:5")


def test_out_holding_another_sweep(tmp_path, capsys, in_repo):
    from xinggan.sweep.plan import definition, plan_variants, write_definition

    out = tmp_path / "out"
    first = plan_variants("configs/toy.yaml", [OVERLAYS[0]])
    write_definition(out, definition("configs/toy.yaml", [OVERLAYS[0]], [], first, str(REPO)), first)
    before = sorted(p.name for p in out.iterdir())
    code, err = run_cli(["--base", "configs/toy.yaml", "--overlays", "configs/ablations/as_only.yaml",
                         "--out", str(out)], capsys)
    assert_one_line_error(code, err, str(out), "another sweep", "sa_only", "as_only")
    # the same variants with another --set: another sweep too
    code, err = run_cli(["--base", "configs/toy.yaml", "--overlays", OVERLAYS[0], "--set",
                         "train.iterations=7", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "train.iterations", "7")
    assert sorted(p.name for p in out.iterdir()) == before  # nothing added, nothing launched
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    code, err = run_cli(["--base", "configs/toy.yaml", "--out", str(tmp_path / "busy")], capsys)
    assert_one_line_error(code, err, "not a sweep folder")


def test_one_sweep_command_per_folder(tmp_path, capsys, in_repo):
    """While a sweep command runs on a folder (it holds sweep.lock), a second one is refused."""
    import fcntl

    from xinggan.sweep.plan import definition, plan_variants, write_definition

    out = tmp_path / "out"
    variants = plan_variants("configs/toy.yaml", [])
    write_definition(out, definition("configs/toy.yaml", [], [], variants, str(REPO)), variants)
    with open(out / "sweep.lock", "w") as handle:
        handle.write("4321")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_EX)
        code, err = run_cli(["--base", "configs/toy.yaml", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "another scripts/sweep.py (pid 4321)", "--status")
    assert not (out / "submitit").exists()


def test_unknown_launcher_and_slurm_options_without_slurm(tmp_path, capsys, in_repo):
    out = tmp_path / "out"
    code, err = run_cli(["--base", "configs/toy.yaml", "--out", str(out), "--launcher", "pbs"], capsys)
    assert_one_line_error(code, err, "--launcher 'pbs'", "local or slurm")
    code, err = run_cli(["--base", "configs/toy.yaml", "--out", str(out), "--partition", "gpu",
                         "--time", "60"], capsys)
    assert_one_line_error(code, err, "--partition", "--time", "without --launcher slurm")
    code, err = run_cli(["--base", "configs/toy.yaml", "--out", str(out), "--slurm-extra",
                         "--constraint=a100"], capsys)
    assert_one_line_error(code, err, "--slurm-extra")
    code, err = run_cli(["--base", "configs/toy.yaml", "--out", str(out), "--launcher", "slurm",
                         "--time", "soon"], capsys)
    assert_one_line_error(code, err, "--time 'soon'")
    assert not out.exists()


def test_local_jobs_get_their_own_gpus(tmp_path, capsys, monkeypatch, in_repo):
    """The local launcher gives each concurrent job its own GPU group (as CUDA_VISIBLE_DEVICES
    numbers), and refuses more GPUs per variant than the machine shows."""
    from xinggan.sweep.launch import gpu_groups, local_gpus
    from xinggan.sweep.plan import SweepError

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5")
    assert local_gpus() == [2, 3, 5]
    assert gpu_groups(local_gpus(), 1) == [[2], [3], [5]] and gpu_groups(local_gpus(), 2) == [[2, 3]]
    assert gpu_groups([], 1) == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8d7e")
    with pytest.raises(SweepError, match="as numbers"):
        local_gpus()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    code, err = run_cli(["--base", "configs/toy.yaml", "--out", str(tmp_path / "out"), "--gpus-per-node", "2"], capsys)
    assert_one_line_error(code, err, "--gpus-per-node 2", "1 GPU")
    assert not (tmp_path / "out").exists()


# -- the Slurm path ---------------------------------------------------------------------------------------


def sbatch_directives(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line[len("#SBATCH --"):].partition("=")
            out[key] = value if value else True
    return out


def test_slurm_submission_file(tmp_path):
    """The sbatch file of a 3-variant array with 4 GPUs per variant, as submitit writes it."""
    from xinggan.sweep.launch import LaunchOptions, check_options, sbatch_text

    opts = LaunchOptions(launcher="slurm", gpus_per_node=4, partition="gpu", nodes=1, cpus_per_task=10,
                         time="1-12:00:00", mem="200G", array_parallelism=2, signal_delay_s=180,
                         slurm_extra=["--constraint=a100", "qos=high", "#SBATCH --exclusive"],
                         slurm_setup=["module load cuda/12.4"])
    check_options(opts, ["--partition", "--time"])
    text = sbatch_text(tmp_path / "out", opts, 3)
    d = sbatch_directives(text)
    assert d["array"] == "0-2%2"                                     # 3 variants, 2 at a time
    assert d["gpus-per-node"] == "4" and d["ntasks-per-node"] == "4"  # one task (DDP rank) per GPU
    assert d["nodes"] == "1" and d["cpus-per-task"] == "10" and d["partition"] == "gpu"
    assert d["time"] == str(36 * 60) and d["mem"] == "200G"
    assert d["requeue"] is True                                       # a preempted job comes back
    assert d["signal"] == "USR2@180"                                  # saved and requeued before the limit
    assert d["constraint"] == "a100" and d["qos"] == "high" and d["exclusive"] is True
    assert str(tmp_path / "out" / "submitit") in d["output"] and "%A_%a" in d["output"]
    lines = text.splitlines()
    assert lines.index("module load cuda/12.4") < next(i for i, x in enumerate(lines) if x.startswith("srun "))
    assert re.search(r"^srun .* -m submitit\.core\._submit ", text, re.MULTILINE)
    single = sbatch_directives(sbatch_text(tmp_path / "out", LaunchOptions(launcher="slurm"), 1))
    assert "array" not in single and single["ntasks-per-node"] == "1" and "gpus-per-node" not in single


def test_slurm_dry_run_prints_the_array_and_submits_nothing(tmp_path, capsys, in_repo):
    from xinggan.sweep.cli import main

    out = tmp_path / "out"
    code = main(["--base", "configs/toy.yaml", "--overlays", *OVERLAYS, "configs/ablations/shared_projections.yaml",
                 "--out", str(out), "--launcher", "slurm", "--gpus-per-node", "2", "--slurm-extra",
                 "--constraint=a100", "--qos=high", "--dry-run"])
    text = capsys.readouterr().out
    assert code == 0
    # shared_projections changes nothing on the toy config: not run (its row would repeat the base's)
    assert "shared_projections.yaml changes nothing" in text and "variant(s): base, sa_only, as_only;" in text
    d = sbatch_directives(text)
    assert d["array"] == "0-2%3" and d["ntasks-per-node"] == "2" and d["constraint"] == "a100" and d["qos"] == "high"
    assert not out.exists()


def test_each_task_of_a_multi_gpu_job_gets_torchruns_variables(monkeypatch):
    """Task 2 of a 4-task Slurm job: the variables train.py reads as under torchrun."""
    from xinggan.sweep.job import distributed_env
    from xinggan.training import distributed_context

    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    for key, value in {"SLURM_JOB_ID": "77", "SLURM_NTASKS": "4", "SLURM_JOB_NUM_NODES": "1",
                       "SLURM_NODEID": "0", "SLURM_PROCID": "2", "SLURM_LOCALID": "2",
                       "SLURM_JOB_NODELIST": "gpu[3-4]"}.items():
        monkeypatch.setenv(key, value)
    env = distributed_env()
    assert env["RANK"] == "2" and env["LOCAL_RANK"] == "2" and env["WORLD_SIZE"] == "4"
    assert env["MASTER_ADDR"] == "gpu3" and 20000 <= int(env["MASTER_PORT"]) <= 60000
    assert distributed_env()["MASTER_PORT"] == env["MASTER_PORT"]  # the same after a requeue
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert distributed_context() == (2, 2, 4)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert distributed_env() == {}


def _slurm_answers() -> bool:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return False
    try:
        run = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in run.stdout.split())


@pytest.mark.skipif(not _slurm_answers(),
                    reason="no Slurm answers here (sinfo); scripts/ci_slurm.sh starts a one-node one")
def test_real_slurm_sweep(tiny_data, tmp_path):
    """Base + one overlay as a real Slurm job array; the tables appear once both are scored."""
    out = tmp_path / "slurm_sweep"
    cmd = SWEEP + ["--base", "configs/toy.yaml", "--overlays", OVERLAYS[0], "--set",
                   *sweep_sets(tiny_data, **{"train.iterations": 3}), "--out", str(out),
                   "--launcher", "slurm", "--cpus-per-task", "1", "--time", "15"]
    run = subprocess.run(cmd, cwd=REPO, env=job_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "array job" in run.stdout
    ids = [read_state(out / n)["job_id"] for n in ("base", "sa_only")]
    array = ids[0].split("_")[0]
    assert ids == [f"{array}_0", f"{array}_1"]
    deadline = time.time() + 400
    while time.time() < deadline and not (out / "ablation.md").is_file():
        if any(read_state(out / n).get("state") == "failed" for n in ("base", "sa_only")):
            break
        time.sleep(1)
    from xinggan.sweep.launch import status_lines

    assert (out / "ablation.md").is_file(), "\n".join(status_lines(out))
    assert [read_state(out / n)["state"] for n in ("base", "sa_only")] == ["done", "done"]
    sbatch = next((out / "submitit").glob("*_submission.sh")).read_text()
    assert "#SBATCH --requeue" in sbatch and "#SBATCH --array=0-1%2" in sbatch
