"""What only a CUDA GPU can show: AMP training steps, fused attention kernels, exact resume.

Every test here needs CUDA and is skipped without it; ``scripts/gpu_check.py`` runs them on a
GPU machine together with the NCCL run and the batch-32 benchmark.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xinggan.checkpoint import load_checkpoint
from xinggan.config import load_config
from xinggan.ops.attention import dot_product_attention
from xinggan.training import Trainer

from conftest import tiny_training_overrides

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
REPO = Path(__file__).resolve().parents[1]


def cuda_config(root: Path, **extra):
    return load_config(REPO / "configs" / "toy.yaml", tiny_training_overrides(root, **{
        "train.device": "cuda", "model.generator.dropout": 0.5, "loss.pool_size": 2,
        "train.iterations": 2, "train.checkpoint_every": 2, **extra}))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_training_steps(tiny_data, tmp_path, amp):
    cfg = cuda_config(tiny_data, **{"train.amp": amp})
    trainer = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    result = trainer.fit()
    for key in ("g_l1", "g_gan", "d_shape", "d_appearance"):
        assert torch.isfinite(torch.tensor(result[key]))
    changed = [k for k, v in trainer.generator.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed
    assert {p.dtype for p in trainer.generator.parameters()} == {torch.float32}
    if amp == "fp16":  # the grad scaler ran and its state is in the checkpoint
        assert load_checkpoint(trainer.checkpoint_path)["grad_scaler"]["scale"] > 0


@pytest.mark.parametrize("n,dtype", [(512, torch.bfloat16), (2816, torch.bfloat16),
                                     (512, torch.float32), (2816, torch.float32)])
def test_auto_attention_never_runs_the_math_path(n, dtype):
    """The real shapes (Market 32 x 16 and DeepFashion 64 x 44 grids, q/k width 32, v width
    256): with SDPA's math backend switched off, ``auto`` still runs forward and backward (it
    takes a fused kernel or ``chunked``, never the math path) and agrees with the reference."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = torch.Generator(device="cuda").manual_seed(0)
    q, k = (torch.randn(2, n, 32, device="cuda", dtype=dtype, generator=g).mul_(0.2).requires_grad_()
            for _ in range(2))
    v = torch.randn(2, n, 256, device="cuda", dtype=dtype, generator=g).requires_grad_()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                      SDPBackend.CUDNN_ATTENTION]):
        out = dot_product_attention(q, k, v, "auto")
        out.float().square().mean().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    ref = dot_product_attention(q, k, v, "reference")
    ref.float().square().mean().backward()
    tol = dict(atol=2e-2, rtol=5e-2) if dtype == torch.bfloat16 else dict(atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(out.float(), ref.float(), **tol)
    for a, b in zip(grads, (q.grad, k.grad, v.grad)):
        torch.testing.assert_close(a.float(), b.float(), **tol)


def test_chunked_under_autocast_matches_reference_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 700, d, device="cuda", generator=g, requires_grad=True)
               for d in (32, 32, 64))
    outs, grads = [], []
    for impl in ("reference", "chunked"):
        for t in (q, k, v):
            t.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = dot_product_attention(q, k, v, impl, chunk=128)
        out.float().square().mean().backward()
        outs.append(out.float())
        grads.append([t.grad.clone() for t in (q, k, v)])
    torch.testing.assert_close(outs[1], outs[0], atol=2e-2, rtol=2e-2)
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, atol=2e-2, rtol=5e-2)


def test_exact_resume_on_cuda_with_deterministic_algorithms(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        cfg = cuda_config(tiny_data, **{"train.iterations": 4, "train.deterministic": True})
        straight = Trainer(cfg, tmp_path / "a", progress=False, tensorboard=False)
        straight.fit()
        Trainer(cfg, tmp_path / "b", progress=False, tensorboard=False).fit(max_iterations=2)
        resumed = Trainer(cfg, tmp_path / "b", progress=False, tensorboard=False)
        resumed.fit(resume=True)
        for key, value in straight.generator.state_dict().items():
            assert torch.equal(value, resumed.generator.state_dict()[key]), key
    finally:
        torch.use_deterministic_algorithms(False)
