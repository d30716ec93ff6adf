"""What cluster runs need: exact multi-process resume, stop signals to the whole process group,
world-size changes, and torch.compile equal to eager mode."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xinggan.checkpoint import load_checkpoint, save_checkpoint
from xinggan.config import load_config
from xinggan.losses import build_losses
from xinggan.models import build_discriminators, build_generator
from xinggan.training import distributed
from xinggan.training import Trainer, TrainingError
from xinggan.training.state import read_rank_part

from helpers import tiny_training_overrides

REPO = Path(__file__).resolve().parents[1]

RANDOM = {"model.generator.dropout": 0.5, "model.discriminator.dropout": 0.5,
          "loss.pool_size": 2, "data.num_workers": 2}


def cluster_config(root: Path, **extra):
    overrides = tiny_training_overrides(root, **{**RANDOM, "train.batch_size": 4,
                                                 "train.iterations": 6,
                                                 "train.checkpoint_every": 2, **extra})
    return load_config(REPO / "configs" / "toy.yaml", overrides)


def assert_same_tree(a, b, where="checkpoint") -> int:
    """Every tensor and value of two checkpoint trees equal; returns the number of tensors."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
        return 1
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        return sum(assert_same_tree(a[k], b[k], f"{where}.{k}") for k in a)
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        return sum(assert_same_tree(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
    assert a == b, f"{where}: {a!r} != {b!r}"
    return 0


def _resume_worker(rank: int, world: int, init_file: str, root: str, out_dir: str) -> None:
    import multiprocessing

    import torch.distributed as dist

    # The loader workers start as under train.py run by srun or torchrun: forked. A child of
    # mp.spawn would spawn them, each importing torch again (seconds apiece on 2 cores).
    multiprocessing.set_start_method("fork", force=True)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = cluster_config(Path(root), **{"train.iterations": 4})
        kw = dict(rank=rank, world_size=world, progress=False, tensorboard=False)
        Trainer(cfg, Path(out_dir) / "straight", **kw).fit()
        Trainer(cfg, Path(out_dir) / "split", **kw).fit(max_iterations=2)
        torch.manual_seed(4321 + rank)  # a resume must not depend on the process's RNG
        Trainer(cfg, Path(out_dir) / "split", **kw).fit(resume=True)
    finally:
        distributed.finish()  # the DDP reducers go before the process group


def test_two_process_resume_equals_straight_run(tiny_data, tmp_path):
    """2 gloo processes, dropout in every network, a 2-sample pool, 2 loader workers per
    rank: 4 iterations straight equal 2 + resume + 2, on every tensor of the checkpoint."""
    import torch.multiprocessing as mp

    mp.spawn(_resume_worker, args=(2, str(tmp_path / "init"), str(tiny_data), str(tmp_path)),
             nprocs=2, join=True)
    runs = {}
    for name in ("straight", "split"):
        folder = tmp_path / name / "checkpoints"
        state = load_checkpoint(folder / "latest.pt")
        assert state["ranks"] == ["rank0-000000004.pt", "rank1-000000004.pt"]
        assert sorted(p.name for p in folder.glob("rank*.pt")) == state["ranks"]  # older parts gone
        state["ranks"] = [read_rank_part(folder, part, r, 4) for r, part in enumerate(state["ranks"])]
        state.pop("versions")
        runs[name] = state
    straight, split = runs["straight"], runs["split"]
    assert straight["iteration"] == split["iteration"] == 4
    # each rank's own RNG and pools
    assert not torch.equal(straight["ranks"][0]["rng"]["torch"], straight["ranks"][1]["rng"]["torch"])
    assert assert_same_tree(straight, split) > 500


def test_world_size_change_is_refused_unless_asked(tiny_data, tmp_path):
    cfg = cluster_config(tiny_data, **{"data.num_workers": 0, "train.iterations": 2,
                                       "train.checkpoint_every": 1})
    Trainer(cfg, tmp_path / "run", progress=False, tensorboard=False).fit()
    path = tmp_path / "run" / "checkpoints" / "latest.pt"
    state = load_checkpoint(path)
    state["world_size"] = 4  # as if written by 4 processes
    state["ranks"] = state["ranks"] * 4
    save_checkpoint(state, path)
    longer = cluster_config(tiny_data, **{"data.num_workers": 0, "train.iterations": 3})
    with pytest.raises(TrainingError, match="written by 4 process.*this run has 1"):
        Trainer(longer, tmp_path / "run", progress=False, tensorboard=False).fit(resume=True)
    trainer = Trainer(longer, tmp_path / "run", progress=False, tensorboard=False,
                      allow_world_size_change=True)
    assert trainer.fit(resume=True)["iteration"] == 3
    assert any("re-seeded" in line for line in trainer.log.notices)
    assert "re-seeded" in (tmp_path / "run" / "notices.txt").read_text()


def test_sigterm_to_the_process_group_saves_and_resumes(tiny_data, tmp_path):
    """SIGTERM to the whole process group (as Slurm sends it) also reaches the DataLoader
    workers; they ignore it, the main process finishes the iteration, saves and exits 0."""
    run_dir = tmp_path / "run"

    def command(iterations: int) -> list[str]:
        cmd = [sys.executable, "train.py", "--config", "configs/toy.yaml", "--run-dir",
               str(run_dir), "--no-progress", "--set"]
        cmd += tiny_training_overrides(tiny_data, **{**RANDOM, "train.iterations": iterations,
                                                     "train.checkpoint_every": 100000})
        return cmd

    proc = subprocess.Popen(command(100000), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    stats = run_dir / "stats.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and not (stats.is_file() and stats.stat().st_size > 0):
        time.sleep(0.2)
    assert stats.is_file(), proc.communicate()[0].decode()
    workers = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
    assert len(workers.stdout.split()) >= 3  # the main process and its 2 loader workers
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "killed by signal" not in text, text
    saved = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["iteration"]
    assert 1 <= saved < 100000 and f"stopped at iteration {saved}" in text
    again = subprocess.run(command(saved + 2) + ["--resume"], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pt")["iteration"] == saved + 2


def _inductor_works() -> bool:
    try:
        from torch._inductor import config  # noqa: F401
    except Exception:  # pragma: no cover
        return False
    return any(Path(d, "gcc").exists() or Path(d, "g++").exists()
               for d in os.environ.get("PATH", "").split(os.pathsep))


@pytest.mark.skipif(not _inductor_works(), reason="torch.compile's Inductor needs a C++ compiler")
def test_compiled_generator_equals_eager(tmp_path, monkeypatch):
    """torch.compile (Inductor, CPU) of a small generator gives the eager outputs to float32
    rounding, with ``attention_impl: auto`` fixed to what eager mode runs."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    cfg = load_config(REPO / "configs" / "toy.yaml", [
        "data.height=32", "data.width=16", "model.generator.ngf=8", "model.generator.n_blocks=1",
        "model.generator.num_candidates=2"])
    torch.manual_seed(0)
    generator = build_generator(cfg).eval()
    g = torch.Generator().manual_seed(1)
    inputs = (torch.rand(2, 3, 32, 16, generator=g) * 2 - 1, torch.rand(2, 18, 32, 16, generator=g),
              torch.rand(2, 18, 32, 16, generator=g))
    with torch.no_grad():
        eager = generator(*inputs)
        compiled = torch.compile(generator)(*inputs)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    assert not torch.equal(eager, torch.zeros_like(eager))


@pytest.mark.parametrize("config", ["toy", "market_xingganpp"])
def test_the_whole_iteration_compiles_without_graph_breaks(config):
    """``train.compile`` compiles the generator, both discriminators and the VGG features:
    each must trace as one graph (a break falls back to eager Python between graphs)."""
    cfg = load_config(REPO / "configs" / f"{config}.yaml", [
        "data.height=32", "data.width=16", "model.generator.ngf=8", "model.generator.n_blocks=1",
        "model.generator.num_candidates=2", "model.discriminator.ndf=8",
        "loss.vgg_weights=random", "loss.lambda_perceptual=1.0"])
    torch.manual_seed(0)
    generator = build_generator(cfg)
    shape_d, appearance_d = build_discriminators(cfg)
    losses = build_losses(cfg)
    image, pose = torch.rand(2, 3, 32, 16) * 2 - 1, torch.rand(2, 18, 32, 16)
    for name, module, inputs in (("generator", generator, (image, pose, pose)),
                                 ("shape D", shape_d, (torch.cat([image, pose], 1),)),
                                 ("appearance D", appearance_d, (torch.cat([image, image], 1),)),
                                 ("VGG loss", losses["perceptual"], (image, image))):
        torch._dynamo.reset()
        explained = torch._dynamo.explain(module)(*inputs)
        assert explained.graph_break_count == 0, (name, explained.break_reasons)
        assert explained.graph_count == 1, name
