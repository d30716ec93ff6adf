"""What only a CUDA GPU can show: AMP training steps, fused attention kernels, exact resume.

Each check is a plain function (``check_*``) of the device and of what it checks (an attention
implementation, a trainer, a trainer factory): the tests here run them on CUDA and are skipped
without it, ``tests/test_cuda_checks.py`` runs the same functions on the CPU, with the correct
implementations and with deliberately broken ones, to show that each check fails on a wrong
backward, a skipped optimizer step or an inexact resume.  ``scripts/gpu_check.py`` runs this
file on a GPU machine together with the NCCL run and the batch-32 benchmark.

``CUBLAS_WORKSPACE_CONFIG`` (needed by deterministic cuBLAS) is set in ``conftest.py`` when the
test session starts, before anything uses CUDA: cuBLAS reads it only once.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch

from xinggan.config import load_config
from xinggan.ops.attention import dot_product_attention
from xinggan.training import Trainer

from helpers import load_script, tiny_training_overrides

REPO = Path(__file__).resolve().parents[1]
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
pytestmark = requires_cuda

# -- attention: output and gradients against float64 ------------------------------------------

# The largest relative error (2-norm of the difference over the 2-norm of the float64 value)
# allowed for an attention output or gradient, by the dtype its products run in: a few units of
# that dtype's rounding.  float32 allows TF32's 10-bit mantissa, which CUDA may use for float32
# products.  A gradient 1% off (k's gradient scaled by 1.01) is outside the float32 bound; in
# bfloat16 a dropped term of the softmax backward is (tests/test_cuda_checks.py).
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


@pytest.mark.parametrize("n,dtype", [(512, torch.bfloat16), (2816, torch.bfloat16),
                                     (512, torch.float32), (2816, torch.float32)])
def test_auto_attention_never_runs_the_math_path(n, dtype):
    """The real shapes (Market 32 x 16 and DeepFashion 64 x 44 grids, q/k width 32, v width
    256): with SDPA's math backend switched off, ``auto`` still runs forward and backward (it
    takes a fused kernel or ``chunked``, never the math path) and agrees with float64."""
    check_attention(auto_without_math, "cuda", n=n, dtype=dtype)


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


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_training_steps(tiny_data, tmp_path, amp):
    # 6 iterations: fp16's scaler starts at 2**16 and may skip the first steps on overflow
    cfg = training_config(tiny_data, **{"train.amp": amp, "train.iterations": 6,
                                        "train.checkpoint_every": 6})
    trainer = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    check_training_steps(trainer, amp)


# -- exact resume -----------------------------------------------------------------------------


def training_tensors(trainer) -> dict:
    """Everything a continued run depends on: the networks' parameters and buffers and the
    optimizers' states."""
    return {"networks": {name: m.state_dict() for name, m in networks(trainer).items()},
            "optimizers": {name: o.state_dict() for name, o in optimizers(trainer).items()}}


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
    count, diffs = load_script("gpu_check").differing_tensors(training_tensors(straight),
                                                  training_tensors(resumed))
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


def test_exact_resume_on_cuda_with_deterministic_algorithms(tiny_data, tmp_path):
    cfg = training_config(tiny_data, **{"train.iterations": 4, "train.deterministic": True})
    with deterministic_backends("cuda"):
        check_exact_resume(lambda run_dir: Trainer(cfg, run_dir, progress=False,
                                                   tensorboard=False), tmp_path, 4)
