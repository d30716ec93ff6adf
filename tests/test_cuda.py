"""What only a CUDA GPU can show (``-m cuda``: AMP training steps, fused attention kernels, exact
resume, NCCL DDP), and the same checks on the CPU against correct and deliberately broken code (a
backward 1% off or missing a term, skipped optimizer steps, parameters that never move, a resume
that loses the random state), which shows that each check can fail.
"""
from __future__ import annotations

import contextlib
import math
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch

from xinggan.config import load_config
from xinggan.ops.attention import dot_product_attention
from xinggan.training import Trainer, distributed

from helpers import tiny_training_overrides

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(min(torch.get_num_threads(), 2))

# -- attention: output and gradients against float64 ------------------------------------------

# The largest relative error (2-norm of the difference over the 2-norm of the float64 value)
# allowed for an attention output or gradient, by the dtype its products run in: a few units of
# that dtype's rounding.  float32 allows TF32's 10-bit mantissa, which CUDA may use for float32
# products.  A gradient 1% off (k's gradient scaled by 1.01) is outside the float32 bound; in
# bfloat16 a dropped term of the softmax backward is (the CPU tests below).
REL_TOL = {torch.float32: 2 * 2.0 ** -10, torch.float16: 4 * 2.0 ** -10,
           torch.bfloat16: 4 * 2.0 ** -7}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    want = want.detach().double()
    return ((got.detach().double() - want).norm() / want.norm()).item()


def exact_attention(q, k, v):
    """softmax(q k^T) v written out, for float64 inputs: the reference of the checks."""
    return torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1), v)


def check_attention(attention: Callable, device: str, *, n: int, dtype=torch.float32,
                    autocast: Optional[torch.dtype] = None, d: int = 32, dv: int = 256,
                    batch: int = 2, scale: float = 0.5, seed: int = 0) -> dict[str, float]:
    """``attention(q, k, v)`` on (batch, n, d) queries / keys and (batch, n, dv) values of
    ``dtype`` (run under ``torch.autocast(device, autocast)`` when given) against
    :func:`exact_attention` in float64 on the same values rounded as the products see them:
    the output and the gradients of q, k and v of the loss ``sum(out * w)`` with a fixed random
    ``w`` (so every output element weighs in, with gradients of order one) must agree to
    :data:`REL_TOL` of the products' dtype.  Returns the relative errors."""
    g = torch.Generator(device=device).manual_seed(seed)
    q, k = (torch.randn(batch, n, d, device=device, generator=g).mul_(scale) for _ in range(2))
    v = torch.randn(batch, n, dv, device=device, generator=g)
    w = torch.randn(batch, n, dv, device=device, generator=g, dtype=torch.float64)
    q, k, v = (t.to(dtype).requires_grad_() for t in (q, k, v))
    with (torch.autocast(device, dtype=autocast) if autocast else contextlib.nullcontext()):
        out = attention(q, k, v)
    (out.double() * w).sum().backward()
    compute = autocast or dtype
    exact = [t.detach().to(compute).double().requires_grad_() for t in (q, k, v)]
    ref = exact_attention(*exact)
    (ref * w).sum().backward()
    errors = {"output": relative_error(out, ref)}
    for name, t, r in zip("qkv", (q, k, v), exact):
        assert t.grad is not None, f"no gradient for {name}"
        errors[f"grad {name}"] = relative_error(t.grad, r.grad)
    tol = REL_TOL[compute]
    bad = {name: f"{e:.2e}" for name, e in errors.items() if not e <= tol}  # NaN fails too
    assert not bad, f"relative error above {tol:.1e} ({compute}, n {n}): {bad}"
    return errors


def auto_without_math(q, k, v):
    """``auto`` with SDPA's math backend switched off: a fused kernel or ``chunked``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                      SDPBackend.CUDNN_ATTENTION]):
        return dot_product_attention(q, k, v, "auto")


def chunked_128(q, k, v):
    return dot_product_attention(q, k, v, "chunked", chunk=128)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("n,dtype", [(512, torch.bfloat16), (2816, torch.bfloat16),
                                     (512, torch.float32), (2816, torch.float32)])
def test_auto_attention_never_runs_the_math_path(n, dtype):
    """The real shapes (Market 32 x 16 and DeepFashion 64 x 44 grids, q/k width 32, v width
    256): with SDPA's math backend switched off, ``auto`` still runs forward and backward (it
    takes a fused kernel or ``chunked``, never the math path) and agrees with float64."""
    check_attention(auto_without_math, "cuda", n=n, dtype=dtype)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_chunked_under_autocast_matches_float64_on_cuda():
    check_attention(chunked_128, "cuda", n=700, dv=64, autocast=torch.bfloat16)


# -- AMP training steps ------------------------------------------------------------------------

LOSSES = ("g_total", "g_l1", "g_gan", "d_shape", "d_appearance")


def networks(trainer) -> dict:
    return {"generator": trainer.generator, "shape_discriminator": trainer.shape_d,
            "appearance_discriminator": trainer.appearance_d}


def optimizers(trainer) -> dict:
    parts = trainer.parts
    return {"generator": parts.opt_g, "shape_discriminator": parts.opt_shape_d,
            "appearance_discriminator": parts.opt_appearance_d}


def optimizer_steps(opt: torch.optim.Optimizer) -> list[int]:
    """Adam's step count of each parameter that has state (0 for one that has none): it grows
    only when ``optimizer.step()`` runs, never when the grad scaler skips the step."""
    return [int(opt.state[p]["step"]) if "step" in opt.state.get(p, {}) else 0
            for group in opt.param_groups for p in group["params"]]


def parameters(trainer) -> dict[str, torch.Tensor]:
    """Every parameter of the three networks (not their buffers: BatchNorm statistics change in
    the forward pass, whether or not an optimizer step is taken)."""
    return {f"{net}.{name}": p.detach().clone() for net, module in networks(trainer).items()
            for name, p in module.named_parameters()}


def check_training_steps(trainer, amp: str) -> dict:
    """``trainer.fit()`` under ``amp``: every loss finite; every optimizer stepped (with fp16's
    grad scaler at least once, as it may skip steps whose gradients overflowed; otherwise on
    every iteration); every parameter of the three networks changed and still float32."""
    before = parameters(trainer)
    result = trainer.fit()
    iterations = result["iteration"]
    assert iterations >= 1
    bad = {key: result[key] for key in LOSSES if not math.isfinite(result[key])}
    assert not bad, f"non-finite losses {bad}"
    if amp == "fp16":
        assert trainer.parts.scaler.is_enabled(), "fp16 without its grad scaler"
    for name, opt in optimizers(trainer).items():
        steps = optimizer_steps(opt)
        if amp == "fp16":
            assert max(steps) >= 1, (
                f"{name}: the grad scaler skipped the optimizer step on all {iterations} "
                "iterations (inf/NaN gradients every time)")
        else:
            assert set(steps) == {iterations}, (
                f"{name}: optimizer steps {sorted(set(steps))}, not {iterations}")
    after = parameters(trainer)
    unchanged = [key for key, value in before.items() if torch.equal(value, after[key])]
    assert not unchanged, (f"{len(unchanged)} of {len(before)} parameters did not change: "
                           f"{unchanged[:8]}")
    assert {p.dtype for p in after.values()} == {torch.float32}
    return result


def training_config(root: Path, device: str = "cuda", **extra):
    """The tiny toy run on ``device``, with dropout in every network and a 2-image pool (so a
    resume that restores a random stream wrongly gives other weights)."""
    return load_config(REPO / "configs" / "toy.yaml", tiny_training_overrides(root, **{
        "train.device": device, "model.generator.dropout": 0.5,
        "model.discriminator.dropout": 0.5, "loss.pool_size": 2, "train.iterations": 2,
        "train.checkpoint_every": 2, **extra}))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_training_steps(tiny_data, tmp_path, amp):
    # 6 iterations: fp16's scaler starts at 2**16 and may skip the first steps on overflow
    cfg = training_config(tiny_data, **{"train.amp": amp, "train.iterations": 6,
                                        "train.checkpoint_every": 6})
    trainer = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    check_training_steps(trainer, amp)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_steady_iterations_never_wait_for_the_gpu(tiny_data, tmp_path, amp):
    """After a warm-up step, four training steps run with CUDA's sync debug mode set to "error":
    any host read or synchronising copy inside an iteration raises."""
    cfg = training_config(tiny_data, **{"train.amp": amp, "train.iterations": 8,
                                        "train.log_every": 100, "train.checkpoint_every": 100})
    trainer = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    loader, _ = trainer.make_loader(0)
    batches = iter(loader)
    trainer.step(trainer._to_device(next(batches)))  # warm-up: first-use allocations and caches
    steady = [next(batches) for _ in range(4)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in steady:
            trainer.step(trainer._to_device(batch))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    trainer.parts.health.check()  # and the steps were real ones


def _sync_batchnorm_worker(rank: int, init_file: str, root: str, out: str) -> None:
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        cfg = training_config(Path(root), **{"train.batch_size": 4, "train.iterations": 1,
                                             "model.generator.dropout": 0.0})
        trainer = Trainer(cfg, Path(out) / "run", device=torch.device("cuda", rank), rank=rank,
                          world_size=2, progress=False, tensorboard=False)
        assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in trainer.generator.modules())
        trainer.fit()
        if rank == 0:
            torch.save({k: v.cpu() for k, v in trainer.generator.named_buffers()},
                       Path(out) / "two.pt")
    finally:
        distributed.finish()


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_gpus_normalise_over_the_whole_batch_as_the_release(tiny_data, tmp_path):
    """batch 4 on 2 GPUs with ``sync_batchnorm: auto``: the generator's BatchNorm statistics
    after one iteration are those of one GPU over the 4 images (the release's grouping)."""
    import torch.multiprocessing as mp

    mp.spawn(_sync_batchnorm_worker, args=(str(tmp_path / "init"), str(tiny_data), str(tmp_path)),
             nprocs=2, join=True)
    cfg = training_config(tiny_data, **{"train.batch_size": 4, "train.iterations": 1,
                                        "model.generator.dropout": 0.0})
    one = Trainer(cfg, tmp_path / "one", progress=False, tensorboard=False)
    one.fit()
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    stats = [k for k in two if k.endswith(("running_mean", "running_var"))]
    assert stats
    for key in stats:
        torch.testing.assert_close(two[key], dict(one.generator.named_buffers())[key].cpu(),
                                   rtol=1e-4, atol=1e-5, msg=key)


# -- exact resume -----------------------------------------------------------------------------


def training_tensors(trainer) -> dict:
    """Everything a continued run depends on: the networks' parameters and buffers and the
    optimizers' states."""
    return {"networks": {name: m.state_dict() for name, m in networks(trainer).items()},
            "optimizers": {name: o.state_dict() for name, o in optimizers(trainer).items()}}


def differing_tensors(a, b, where: str = "") -> tuple[int, list[str]]:
    """(tensors compared, places that differ) of two trees of dicts, lists and tensors, bit for
    bit (-0.0 differs from 0.0, a NaN equals the same NaN); plain values are not compared."""
    if torch.is_tensor(a) and torch.is_tensor(b):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(
            *(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8) for t in (a, b)))
        return 1, [] if same else [where or "<root>"]
    if torch.is_tensor(a) or torch.is_tensor(b):
        return 0, [f"{where}: a tensor on one side only"]
    pairs = ([(f"{where}.{k}", a.get(k), b.get(k)) for k in {**a, **b}] if isinstance(a, dict) and isinstance(b, dict)
             else [(f"{where}[{i}]", x, y) for i, x, y in zip(range(len(a)), a, b)]
             if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) else [])
    count, diffs = 0, []
    for place, x, y in pairs:
        n, d = differing_tensors(x, y, place)
        count, diffs = count + n, diffs + d
    return count, diffs


def check_exact_resume(make_trainer: Callable, root: Path, iterations: int) -> int:
    """A straight run of ``iterations`` against ``iterations // 2`` plus a resume in a fresh
    trainer (with the process's RNG moved on in between): every parameter, buffer and
    optimizer-state tensor equal bit for bit.  ``make_trainer(run_dir)`` builds a trainer of a
    config whose ``train.iterations`` is ``iterations``.  Returns the tensors compared."""
    straight = make_trainer(root / "straight")
    straight.fit()
    make_trainer(root / "split").fit(max_iterations=iterations // 2)
    torch.manual_seed(4321)  # a resume must not depend on the process's RNG state
    resumed = make_trainer(root / "split")
    resumed.fit(resume=True)
    assert straight.iteration == resumed.iteration == iterations
    count, diffs = differing_tensors(training_tensors(straight), training_tensors(resumed))
    assert count > 0
    assert not diffs, f"{len(diffs)} tensors differ after the resume: {diffs[:8]}"
    return count


@contextlib.contextmanager
def deterministic_backends(device: str):
    """The backend flags of a ``train.deterministic`` run (set as train.py sets them), put back
    afterwards."""
    from xinggan.runtime import configure_backends

    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    configure_backends(device, deterministic=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
         torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) = saved[1:]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_exact_resume_on_cuda_with_deterministic_algorithms(tiny_data, tmp_path):
    cfg = training_config(tiny_data, **{"train.iterations": 4, "train.deterministic": True})
    with deterministic_backends("cuda"):
        check_exact_resume(lambda run_dir: Trainer(cfg, run_dir, progress=False,
                                                   tensorboard=False), tmp_path, 4)


# -- NCCL DDP: two processes, straight against stopped and resumed ------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_process_ddp_resume_is_exact(tiny_data, tmp_path):
    """torchrun, 2 processes, deterministic: 4 iterations straight against 2, stop, resume to 4; every
    checkpoint file of the two runs holds the same tensors, bit for bit."""
    def train(run_dir, iterations, *extra):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                   str(REPO / "train.py"), "--config", str(REPO / "configs" / "toy.yaml"), "--no-progress",
                   "--run-dir", str(run_dir), *extra, "--set", *tiny_training_overrides(tiny_data, **{
                       "train.device": "cuda", "train.batch_size": 4, "train.checkpoint_every": 2,
                       "train.deterministic": True, "model.generator.dropout": 0.5, "train.iterations": iterations})]
        run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        return run.stdout + run.stderr

    train(tmp_path / "straight", 4)
    train(tmp_path / "split", 2)
    assert "resumed from" in train(tmp_path / "split", 4, "--resume")
    files = sorted(p.name for p in (tmp_path / "straight" / "checkpoints").glob("*.pt"))
    assert files and files == sorted(p.name for p in (tmp_path / "split" / "checkpoints").glob("*.pt"))
    for name in files:
        a, b = (torch.load(tmp_path / run / "checkpoints" / name, map_location="cpu", weights_only=True)
                for run in ("straight", "split"))
        count, diffs = differing_tensors(a, b)
        assert count > 0 and not diffs, (name, diffs[:8])


# -- the checks on the CPU, against correct and broken code ----------------------------------------


def test_bit_for_bit_comparison_flags_each_kind_of_difference():
    a = {"w": torch.tensor([0.0, float("nan")]), "ranks": [{"rng": torch.arange(4, dtype=torch.uint8)}]}
    assert differing_tensors(a, {"w": a["w"].clone(), "ranks": [{"rng": torch.arange(4, dtype=torch.uint8)}]}) == (2, [])
    assert differing_tensors(a, {**a, "w": torch.tensor([-0.0, float("nan")])})[1] == [".w"]
    assert differing_tensors(a, {**a, "w": a["w"].double()})[1] == [".w"]
    assert differing_tensors(a, {**a, "ranks": [{"rng": torch.ones(4, dtype=torch.uint8)}]})[1] == [".ranks[0].rng"]
    assert differing_tensors(a, {**a, "w": [0.0]})[1] == [".w: a tensor on one side only"]


# -- deliberately wrong attention backwards ---------------------------------------------------


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by ``factor``."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def k_gradient_one_percent_off(q, k, v):
    """The correct attention, with k's gradient scaled by 1.01; the output is untouched."""
    return auto_without_math(q, _ScaleGradient.apply(k, 1.01), v)


class _SoftmaxWithoutRowTerm(torch.autograd.Function):
    """softmax over the last axis whose backward drops the row term: ``p * g`` instead of
    ``p * (g - rowsum(p * g))``."""

    @staticmethod
    def forward(ctx, s):
        p = torch.softmax(s, dim=-1)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        return p * grad


def attention_without_row_term(q, k, v):
    """The reference path (products under the current autocast, softmax in at least float32)
    with the softmax backward missing its row term."""
    energy = torch.bmm(q, k.transpose(1, 2))
    p = _SoftmaxWithoutRowTerm.apply(energy.to(torch.promote_types(energy.dtype, torch.float32)))
    return torch.bmm(p.to(v.dtype), v)


def test_the_broken_attentions_break_the_backward_only():
    """The two broken implementations give the exact forward and another gradient, so only
    a gradient check can catch them (checked on float64 against the formula)."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 40, d, generator=g, dtype=torch.float64) for d in (8, 8, 16))
    w = torch.randn(1, 40, 16, generator=g, dtype=torch.float64)
    grads = []
    for fn in (exact_attention, k_gradient_one_percent_off, attention_without_row_term):
        inputs = [t.clone().requires_grad_() for t in (q, k, v)]
        out = fn(*inputs)
        torch.testing.assert_close(out, exact_attention(q, k, v), rtol=1e-9, atol=0)
        (out * w).sum().backward()
        grads.append([t.grad for t in inputs])
    exact, scaled, no_row = grads
    torch.testing.assert_close(scaled[1], 1.01 * exact[1], rtol=1e-9, atol=0)
    torch.testing.assert_close(scaled[0], exact[0], rtol=1e-9, atol=0)
    assert not torch.allclose(no_row[0], exact[0], rtol=1e-3)


# -- attention checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_check_passes_on_cpu(dtype):
    """The check of test_auto_attention_never_runs_the_math_path, on the CPU (``auto`` runs
    ``chunked`` here) and on SDPA's CPU path."""
    check_attention(auto_without_math, "cpu", n=512, dtype=dtype)
    check_attention(lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
        q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=1.0).squeeze(1),
        "cpu", n=512, dtype=dtype)


def test_attention_check_fails_on_a_k_gradient_one_percent_off():
    with pytest.raises(AssertionError, match="grad k") as caught:
        check_attention(k_gradient_one_percent_off, "cpu", n=512, dtype=torch.float32)
    assert "output" not in str(caught.value) and "grad q" not in str(caught.value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_check_fails_on_a_softmax_backward_without_its_row_term(dtype):
    with pytest.raises(AssertionError, match="grad q"):
        check_attention(attention_without_row_term, "cpu", n=512, dtype=dtype)


def test_autocast_attention_check_passes_and_fails_on_cpu():
    """The check of test_chunked_under_autocast_matches_float64_on_cuda, under CPU autocast."""
    check_attention(chunked_128, "cpu", n=700, dv=64, autocast=torch.bfloat16)
    with pytest.raises(AssertionError, match="grad q"):
        check_attention(attention_without_row_term, "cpu", n=700, dv=64,
                        autocast=torch.bfloat16)


# -- training-step checks -------------------------------------------------------------------


class SkipsEveryStep:
    """A grad scaler that finds inf/NaN gradients on every iteration: it scales the losses and
    never runs an optimizer step (what an fp16 run whose every step overflows does)."""

    def __init__(self):
        self.scale_value = 2.0 ** 16

    def is_enabled(self):
        return True

    def scale(self, loss):
        return loss * self.scale_value

    def step(self, optimizer):
        return None  # skipped, as torch.amp.GradScaler skips on inf/NaN gradients

    def update(self):
        self.scale_value /= 2

    def state_dict(self):
        return {}


def cpu_trainer(root, run_dir, **extra):
    return Trainer(training_config(root, "cpu", **extra), run_dir, progress=False,
                   tensorboard=False)


def test_training_check_passes_on_cpu(tiny_data, tmp_path):
    result = check_training_steps(cpu_trainer(tiny_data, tmp_path), "off")
    assert result["iteration"] == 2


@pytest.mark.parametrize("amp,message", [("fp16", "skipped the optimizer step on all 2"),
                                         ("off", "optimizer steps \\[0\\], not 2")])
def test_training_check_fails_when_every_step_is_skipped(tiny_data, tmp_path, amp, message):
    trainer = cpu_trainer(tiny_data, tmp_path)
    trainer.parts.scaler = SkipsEveryStep()
    buffers = {k: v.clone() for k, v in trainer.generator.named_buffers() if v.is_floating_point()}
    with pytest.raises(AssertionError, match=message):
        check_training_steps(trainer, amp)
    # the BatchNorm statistics did move: a check on the state dict would have passed
    moved = [k for k, v in trainer.generator.named_buffers() if k in buffers
             and not torch.equal(v, buffers[k])]
    assert moved


def test_training_check_fails_when_parameters_do_not_move(tiny_data, tmp_path):
    """The optimizers step, but at learning rate 0: the parameter comparison catches it."""
    trainer = cpu_trainer(tiny_data, tmp_path)
    trainer.current_lr = lambda iteration=None: 0.0
    with pytest.raises(AssertionError, match="parameters did not change"):
        check_training_steps(trainer, "off")


# -- exact-resume checks ----------------------------------------------------------------------


def test_resume_check_passes_on_cpu(tiny_data, tmp_path):
    assert check_exact_resume(lambda run_dir: cpu_trainer(tiny_data, run_dir), tmp_path, 2) > 50


def test_resume_check_fails_on_a_resume_that_loses_the_random_state(tiny_data, tmp_path):
    def forgetful_trainer(run_dir):
        trainer = cpu_trainer(tiny_data, run_dir)
        restore = trainer.resume

        def resume():  # restores the checkpoint, then draws from a fresh random stream
            found = restore()
            torch.manual_seed(1)
            return found

        trainer.resume = resume
        return trainer

    with pytest.raises(AssertionError, match="tensors differ after the resume"):
        check_exact_resume(forgetful_trainer, tmp_path, 2)
