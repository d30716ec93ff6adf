"""The training loop: schedule, exact resume, DDP on CPU, stops, logging, full-size smoke."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from xinggan.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from xinggan.config import ConfigError, load_config
from xinggan.data import model_inputs
from xinggan.training import distributed
from xinggan.training import Trainer, TrainingError, lr_factor
from xinggan.training.loop import ranks_recipe
from xinggan.training.state import read_rank_part, rng_state

from helpers import load_script, tiny_training_overrides

REPO = Path(__file__).resolve().parents[1]


def tiny_overrides(root: Path, **extra) -> list[str]:
    return tiny_training_overrides(root, **{
        # dropout on in G and both Ds and a pool that fills after one iteration and then swaps
        # at random: a resume that restores any random stream wrongly gives other weights
        "model.generator.dropout": 0.5, "model.discriminator.dropout": 0.5,
        "train.iterations": 6, "train.checkpoint_every": 3, "loss.pool_size": 2, **extra})


def tiny_config(root: Path, **extra):
    return load_config(REPO / "configs" / "toy.yaml", tiny_overrides(root, **extra))


def state_of(trainer: Trainer) -> dict:
    return {"g": trainer.generator.state_dict(), "ds": trainer.shape_d.state_dict(),
            "da": trainer.appearance_d.state_dict()}


def assert_same_weights(a: dict, b: dict, skip_running_stats: bool = False) -> None:
    for net in a:
        assert a[net].keys() == b[net].keys()
        for key in a[net]:
            if skip_running_stats and ("running_" in key or "num_batches" in key):
                continue
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs"


# -- schedule ------------------------------------------------------------------------


def released_lr(epoch: int, n_const: int, n_decay: int) -> float:
    """The released per-epoch rule, 1-based epoch (written out from docs/architecture.md, Optimisation)."""
    return 1.0 - max(0, epoch + 1 - n_const) / float(n_decay + 1)


def test_lr_follows_the_released_epoch_rule():
    cfg = load_config(REPO / "configs" / "market.yaml").optim
    for epoch in (1, 250, 498, 499, 500, 501, 600, 699, 700):
        for offset in (0, 62, 124):
            it = (epoch - 1) * 125 + offset
            got = lr_factor(it, cfg.lr_constant_iterations, cfg.lr_decay_iterations,
                            cfg.lr_step_iterations)
            assert got == pytest.approx(released_lr(epoch, 500, 200))
    assert lr_factor(0, 62500, 25000, 125) == 1.0
    assert lr_factor(87499, 62500, 25000, 125) == 0.0  # the last iteration trains at lr 0
    values = [lr_factor(i, 100, 50, 1) for i in range(150)]
    assert all(a >= b for a, b in zip(values, values[1:]))


# -- exact resume ----------------------------------------------------------------------


def test_resume_is_bit_identical(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data)
    straight = Trainer(cfg, tmp_path / "straight", progress=False, tensorboard=False)
    straight.fit()
    assert straight.iteration == 6

    first = Trainer(cfg, tmp_path / "split", progress=False, tensorboard=False)
    first.fit(max_iterations=4)  # a checkpoint is written at 3 and at the stop (4)
    assert load_checkpoint(first.checkpoint_path)["iteration"] == 4
    shutil.copyfile(first.checkpoint_path, first.checkpoint_path.parent / "at4.pt")
    del first
    torch.manual_seed(12345)  # resuming must not depend on the process's RNG state
    second = Trainer(cfg, tmp_path / "split", progress=False, tensorboard=False)
    second.fit(resume=True)
    assert second.iteration == 6
    assert_same_weights(state_of(straight), state_of(second))
    # Negative control: the same resume from a checkpoint whose RNG states are another
    # process's gives other weights, so the comparison above does see the random streams.
    state = load_checkpoint(second.checkpoint_path.parent / "at4.pt")
    torch.manual_seed(999)
    state["ranks"][0]["rng"] = rng_state()
    save_checkpoint(state, tmp_path / "tampered" / "checkpoints" / "latest.pt")
    tampered = Trainer(cfg, tmp_path / "tampered", progress=False, tensorboard=False)
    tampered.fit(resume=True)
    assert tampered.iteration == 6
    differs = [k for k, v in tampered.generator.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, straight.generator.state_dict()[k])]
    assert differs


def test_checkpoint_loads_with_load_generator(tiny_data, tmp_path):
    from xinggan import load_generator

    cfg = tiny_config(tiny_data, **{"train.iterations": 1, "train.checkpoint_every": 1})
    trainer = Trainer(cfg, tmp_path, progress=False, tensorboard=True)
    trainer.fit()
    generator = load_generator(trainer.checkpoint_path)
    assert not generator.training
    batch = model_inputs(default_collate([trainer.dataset[0]]), "cpu", cfg.data.heatmap_sigma)
    with torch.no_grad():
        out = generator(batch["source_image"], batch["source_pose"], batch["target_pose"])
    assert out.shape == (1, 3, 64, 32)
    # logging: stats, config, versions, image grid and TensorBoard events
    stats = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["iteration"] == 1 and "g_l1" in stats[-1] and "images_per_s" in stats[-1]
    assert load_config(tmp_path / "config.yaml") == cfg
    assert "torch" in json.loads((tmp_path / "versions.json").read_text())
    assert list((tmp_path / "samples").glob("iter_*.png"))
    assert list((tmp_path / "tensorboard").glob("events.*"))


def test_resume_refuses_another_model(tiny_data, tmp_path):
    Trainer(tiny_config(tiny_data, **{"train.iterations": 1}), tmp_path, progress=False,
            tensorboard=False).fit()
    other = Trainer(tiny_config(tiny_data, **{"model.generator.n_blocks": 3}), tmp_path,
                    progress=False, tensorboard=False)
    with pytest.raises(TrainingError, match="model.generator.n_blocks"):
        other.fit(resume=True)


# -- failures ----------------------------------------------------------------------------


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, **{"train.checkpoint_every": 2})
    trainer = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    trainer.fit(max_iterations=2)
    good = load_checkpoint(trainer.checkpoint_path)
    weights_before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    original = trainer.parts.losses["gan"].forward

    def poisoned(prediction, target_is_real):
        return original(prediction, target_is_real) * float("nan")

    trainer.parts.losses["gan"].forward = poisoned
    with pytest.raises(TrainingError, match=r"non-finite loss at iteration 3: .*g_gan=nan"):
        trainer.fit()
    after = load_checkpoint(trainer.checkpoint_path)
    assert after["iteration"] == good["iteration"] == 2
    # the bad step updated no weight (BatchNorm statistics move in any forward pass; the
    # checkpoint on disk is what a resumed run starts from)
    for k, v in trainer.generator.named_parameters():
        assert torch.equal(v, weights_before[k]), k


def test_batch_not_divisible_by_processes(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, **{"train.batch_size": 3})
    with pytest.raises(ConfigError, match="train.batch_size"):
        Trainer(cfg, tmp_path, world_size=2, progress=False, tensorboard=False)


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2])
def test_a_cluster_s_warning_signal_saves_and_exits_cleanly(tiny_data, tmp_path, sig):
    """What ``sbatch --signal`` and preemption send, to a plain train.py and its loader worker
    (SIGTERM: tests/test_cluster.py)."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "train.py", "--config", "configs/toy.yaml", "--run-dir", str(run_dir),
           "--no-progress"]
    for s in tiny_overrides(tiny_data, **{"train.iterations": 100000, "data.num_workers": 1,
                                          "train.checkpoint_every": 100000}):
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    stats = run_dir / "stats.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (stats.is_file() and stats.stat().st_size > 0):
        time.sleep(0.2)
    assert stats.is_file(), proc.communicate()[0].decode()
    os.killpg(proc.pid, sig)  # the loader worker gets it too, and leaves it to the main process
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()
    state = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert 1 <= state["iteration"] < 100000
    assert f"stopped at iteration {state['iteration']}" in out.decode()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "stopped" and status["iteration"] == state["iteration"], status


HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "numpy", "cpu")


def test_the_host_reads_nothing_between_sync_points(tiny_data, tmp_path, monkeypatch):
    """Between log, checkpoint and image events, package code outside the data layer never calls
    a tensor method that reads a value back to the host (on a GPU each one waits for the device)."""
    cfg = tiny_config(tiny_data, **{"train.iterations": 8, "train.log_every": 100,
                                    "train.checkpoint_every": 100, "train.image_every": 100,
                                    "loss.pool_size": 2, "model.generator.dropout": 0.5})
    trainer = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    package, data = REPO / "xinggan", REPO / "xinggan" / "data"
    reads = []

    def watch(name, original):
        def method(self, *args, **kwargs):
            caller = Path(sys._getframe(1).f_code.co_filename)
            if package in caller.parents and data not in caller.parents:
                reads.append((trainer.iteration, name, f"{caller.name}:{sys._getframe(1).f_lineno}"))
            return original(self, *args, **kwargs)
        return method

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, watch(name, getattr(torch.Tensor, name)))
    trainer.fit()
    monkeypatch.undo()
    # iterations 1..7: the bookkeeping after steps 1..7 and the steps 2..8 (the first step and
    # the events at iteration 8, the end, are outside the window)
    inside = [r for r in reads if 1 <= r[0] <= 7]
    assert inside == [], inside
    assert any(r[0] == 8 for r in reads)  # the end is a sync point: the watch sees reads there


def test_checkpoint_minutes_saves_on_time_as_well(tiny_data, tmp_path):
    """A time-based interval (here a few microseconds: every iteration) beside checkpoint_every;
    each save is timed in saves.jsonl (the loop blocked, the host copy, the background write)."""
    cfg = tiny_config(tiny_data, **{"train.iterations": 3, "train.checkpoint_every": 1000,
                                    "train.checkpoint_minutes": "0.000001"})
    Trainer(cfg, tmp_path, progress=False, tensorboard=False).fit()
    saves = [json.loads(line) for line in (tmp_path / "saves.jsonl").read_text().splitlines()]
    assert [s["iteration"] for s in saves] == [1, 2, 3]
    assert all(s["loop_blocked_s"] >= s["host_copy_s"] > 0 and s["write_s"] > 0 for s in saves)


def test_stale_temporaries_of_a_killed_save_are_removed(tiny_data, tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir(parents=True)
    (folder / ".latest.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    (folder / ".rank1-000000004.pt.a9b8.tmp").write_bytes(b"half a rank's part")
    Trainer(tiny_config(tiny_data, **{"train.iterations": 1}), tmp_path, progress=False,
            tensorboard=False).fit()
    assert sorted(p.name for p in folder.iterdir()) == ["latest.pt"]


def test_a_checkpoint_part_that_is_missing_or_of_another_save_is_refused(tmp_path):
    torch.save({"rank": 1, "iteration": 4, "world_size": 2, "state": {"rng": 1}},
               tmp_path / "rank1-000000004.pt")
    assert read_rank_part(tmp_path, "rank1-000000004.pt", 1, 4) == {"rng": 1}
    with pytest.raises(CheckpointError, match="not rank 1's part of the checkpoint of iteration 6"):
        read_rank_part(tmp_path, "rank1-000000004.pt", 1, 6)
    with pytest.raises(CheckpointError, match="rank1-000000006.pt: part of the checkpoint of "
                                              "iteration 6 is missing"):
        read_rank_part(tmp_path, "rank1-000000006.pt", 1, 6)


@pytest.mark.parametrize("dataset,world,device,sync,pool,line", [
    ("market", 8, "cuda", True, 6, "4 images per process (global batch 32); BatchNorm over 32 "
                                   "images (SyncBatchNorm), the release over 32; image pools of 6 "
                                   "per rank (48 in all, the release 50)"),
    ("market", 2, "cpu", False, 25, "BatchNorm over 16 images per rank, the release over 32"),
    ("deepfashion", 4, "cuda", False, 0, "8 images per process (global batch 32); instance norm"),
    ("market", 1, "cuda", False, 50, None),
])
def test_n_processes_train_the_release_s_normalisation_and_pool_history(dataset, world, device,
                                                                         sync, pool, line):
    """The release trained on one GPU: BatchNorm over the batch of 32, one pool of 50 (Market);
    DeepFashion: instance norm, no pool."""
    cfg = load_config(REPO / "configs" / f"{dataset}.yaml")
    got_sync, got_pool, lines = ranks_recipe(cfg, world, torch.device(device))
    assert (got_sync, got_pool) == (sync, pool)
    assert (line is None and lines == []) or any(line in text for text in lines), lines
    off = cfg.replace("train.sync_batchnorm=off")
    assert ranks_recipe(off, world, torch.device(device))[0] is False
    with pytest.raises(ConfigError, match="32 is not divisible by the 3 processes"):
        ranks_recipe(cfg, 3, torch.device(device))


def test_finish_releases_ddp_wrappers_that_are_still_held(tmp_path):
    """A DDP wrapper kept alive past the process group (a reference cycle, a traceback) must not
    hold its reducer: freed after destroy_process_group, it aborts the process at exit."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0,
                            world_size=1)
    ddp = distributed.wrap(torch.nn.Linear(2, 2), torch.device("cpu"))
    ddp(torch.ones(1, 2)).sum().backward()
    assert hasattr(ddp, "reducer")
    distributed.finish()
    assert not dist.is_initialized() and not hasattr(ddp, "reducer")


# -- multi-process (DDP, gloo, CPU) -------------------------------------------------------


def _ddp_worker(rank: int, world: int, init_file: str, root: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = tiny_config(Path(root), **{"train.batch_size": 4, "train.iterations": 3})
        trainer = Trainer(cfg, Path(out_dir) / "run", rank=rank, world_size=world,
                          progress=False, tensorboard=False)
        trainer.fit()
        torch.save(state_of(trainer), Path(out_dir) / f"rank{rank}.pt")
    finally:
        distributed.finish()  # the DDP reducers go before the process group


def test_ddp_two_cpu_processes_end_with_identical_weights(tiny_data, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tiny_data), str(tmp_path)),
             nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # Parameters are all-reduced; BatchNorm running statistics stay per rank (as in any DDP
    # run without sync_batchnorm) and rank 0's are the ones saved.
    assert_same_weights(a, b, skip_running_stats=True)
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()  # rank 0 saved
    # the ranks trained: weights moved away from the initialisation
    init = Trainer(tiny_config(tiny_data), tmp_path / "init_run", progress=False, tensorboard=False)
    moved = any(not torch.equal(v, a["g"][k]) for k, v in init.generator.state_dict().items()
                if v.is_floating_point())
    assert moved


# -- command line ---------------------------------------------------------------------------


def run_train(capsys, *argv: str) -> tuple[int, str, str]:
    """train.py's main() in this process: (exit code, stdout, stderr)."""
    train = load_script("train", folder="")
    try:
        code = train.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_dry_run_prints_config_and_summary(capsys):
    code, out, err = run_train(capsys, "--config", str(REPO / "configs/market.yaml"), "--dry-run")
    assert code == 0, err
    assert "lambda_perceptual: 50.0" in out
    assert "generator total" in out and "44,853,189" in out
    assert "(1, 3, 128, 64)" in out


def test_set_takes_several_values_after_one_flag(capsys):
    code, out, err = run_train(capsys, "--config", str(REPO / "configs/toy.yaml"), "--dry-run",
                               "--set", "train.batch_size=6", "model.generator.ngf=8",
                               "--set", "train.seed=3")
    assert code == 0, err
    assert "batch_size: 6" in out and "ngf: 8" in out and "seed: 3" in out


def test_bad_override_fails_before_work(tmp_path, capsys):
    code, _, err = run_train(capsys, "--config", str(REPO / "configs/toy.yaml"), "--set",
                             "train.batchsize=3", "--run-dir", str(tmp_path / "r"))
    assert code == 2
    assert "train.batch_size" in err and not (tmp_path / "r").exists()


# DeepFashion's generator at full size trains forward and backward in the released-equivalence
# test (tests/test_convert.py); here the whole loop at Market's full size.
@pytest.mark.parametrize("config, height, width, batch", [
    ("market.yaml", 128, 64, 2),
])
def test_full_size_configs_start_training(config, height, width, batch, tmp_path):
    from xinggan.prep.toy import make_toy_dataset

    make_toy_dataset(tmp_path / "data", seed=2, identities=2, test_identities=1, poses=2,
                     test_pairs=2, height=height, width=width)
    overrides = [f"data.root={tmp_path / 'data'}", "data.num_workers=0",
                 "data.train_annotations=market-annotation-train.csv",
                 "data.test_annotations=market-annotation-test.csv",
                 "data.train_pairs=market-pairs-train.csv", "data.test_pairs=market-pairs-test.csv",
                 f"train.batch_size={batch}", "train.iterations=1", "train.checkpoint_every=1",
                 "train.grid_pairs=1",
                 "loss.vgg_weights=random"]
    cfg = load_config(REPO / "configs" / config, overrides)
    trainer = Trainer(cfg, tmp_path / "run", progress=False, tensorboard=False)
    result = trainer.fit()
    assert result["iteration"] == 1
    for key in ("g_l1", "g_perceptual", "g_gan", "d_shape", "d_appearance"):
        assert torch.isfinite(torch.tensor(result[key])) and result[key] > 0


def test_bf16_autocast_training_runs_on_cpu(tiny_data, tmp_path):
    """``train.amp=bf16``, the setting for DeepFashion on one GPU, through the whole loop on
    CPU autocast: the generator's convolutions run in bfloat16, every loss is finite, every
    network learns, the weights stay float32 and the checkpoint is written."""
    cfg = tiny_config(tiny_data, **{"train.amp": "bf16", "train.iterations": 2,
                                    "train.checkpoint_every": 2})
    trainer = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    before = {k: {n: t.clone() for n, t in v.items()} for k, v in state_of(trainer).items()}
    dtypes = []
    convs = [m for m in trainer.generator.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype)) for m in convs]
    trainer.fit()
    for h in hooks:
        h.remove()
    assert len(dtypes) >= 2 * len(convs) and set(dtypes) == {torch.bfloat16}
    after = state_of(trainer)
    for net in after:
        changed = [n for n, t in after[net].items()
                   if t.is_floating_point() and not torch.equal(t, before[net][n])]
        assert changed, f"{net} did not change"
        assert {t.dtype for t in after[net].values() if t.is_floating_point()} == {torch.float32}
    assert load_checkpoint(trainer.checkpoint_path)["iteration"] == 2
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Trainer(tiny_config(tiny_data, **{"train.amp": "fp16"}), tmp_path / "fp16",
                progress=False, tensorboard=False)


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_says_what_it_chose(tiny_data, tmp_path, monkeypatch, native):
    """``train.amp=auto`` picks bf16 only where the device has native bf16 units, and one
    line, kept in the run folder, says which precision runs. Both branches on any machine:
    the CPU's bf16 flags and oneDNN's answer are forced (AMX-BF16 with oneDNN bf16, or
    neither), and the trainer is put on the CPU."""
    from xinggan import precision

    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda *a: ("amx_bf16",) if native else ())
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: native)
    cfg = tiny_config(tiny_data, **{"train.amp": "auto", "train.iterations": 1})
    trainer = Trainer(cfg, tmp_path, device=torch.device("cpu"), progress=False,
                      tensorboard=False)
    assert trainer.parts.amp_dtype is (torch.bfloat16 if native else None)
    trainer.fit()
    lines = (tmp_path / "notices.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.amp=auto: precision: ")
    if native:
        assert "bfloat16 autocast on cpu" in lines[0] and "amx_bf16" in lines[0]
    else:
        assert "float32 on cpu" in lines[0] and "without amx_bf16" in lines[0]
