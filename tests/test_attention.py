"""Cross-attention maths: the three implementations agree with an explicit formula."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xinggan.config import load_config
from xinggan.models.attention import CrossAttention
from xinggan.models.xing_block import build_cross_attention
from xinggan.ops import attention
from xinggan.ops.attention import ATTENTION_IMPLS, dot_product_attention


def explicit_attention(q, k, v):
    """out_i = sum_j exp(q_i . k_j) v_j / sum_j exp(q_i . k_j), written out with einsum."""
    energy = torch.einsum("bid,bjd->bij", q, k)
    weights = torch.exp(energy - energy.amax(dim=-1, keepdim=True))
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return torch.einsum("bij,bjc->bic", weights, v)


def random_qkv(dtype, n=77, d=4, c=24, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, n, d, generator=g, dtype=dtype)
    k = torch.randn(b, n, d, generator=g, dtype=dtype)
    v = torch.randn(b, n, c, generator=g, dtype=dtype)  # value width differs from q/k width
    return q, k, v


@pytest.mark.parametrize("impl", ATTENTION_IMPLS)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_implementations_match_explicit_formula(impl, dtype, tol):
    q, k, v = random_qkv(dtype)
    expected = explicit_attention(q, k, v)
    out = dot_product_attention(q, k, v, impl, chunk=16)  # 16 does not divide 77
    assert out.shape == (2, 77, 24)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected, atol=tol, rtol=tol)


def test_no_scaling():
    """The released attention does not divide the energy by sqrt(d)."""
    q, k, v = random_qkv(torch.float64, d=16)
    out = dot_product_attention(q, k, v, "sdpa")
    scaled = explicit_attention(q / math.sqrt(16), k, v)
    assert (out - scaled).abs().max() > 1e-2
    torch.testing.assert_close(out, explicit_attention(q, k, v), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_implementations_agree_in_backward(dtype, tol):
    """Each implementation's gradients against the float64 reference maths on the same values
    (float32 runs round differently: the chunked backward forms rowsum(P * dP) where the
    others form the softmax backward, so each is held to the float64 truth)."""
    base = random_qkv(torch.float64, n=40)

    def grads(impl, dt):
        q, k, v = (t.to(dt).clone().requires_grad_() for t in base)
        out = dot_product_attention(q, k, v, impl, chunk=7)
        (out * torch.linspace(-1, 1, out.numel(), dtype=dt).view_as(out)).sum().backward()
        return q.grad, k.grad, v.grad

    truth = grads("reference", torch.float64)
    for impl in ATTENTION_IMPLS:
        for a, b in zip(grads(impl, dtype), truth):
            torch.testing.assert_close(a.double(), b, atol=tol, rtol=tol)


def test_unknown_impl_rejected():
    q, k, v = random_qkv(torch.float32, n=4)
    with pytest.raises(ValueError, match="attention_impl"):
        dot_product_attention(q, k, v, "flash")


def test_cross_attention_roles():
    """Queries and values come from x, keys from y; no residual is added."""
    torch.manual_seed(0)
    attn = CrossAttention(16, qk_reduction=4, impl="reference").double()
    x = torch.randn(2, 16, 5, 3, dtype=torch.float64)
    y = torch.randn(2, 16, 5, 3, dtype=torch.float64)

    def project(conv, t):  # 1x1 conv as a matrix product: (B, N, C_out)
        w = conv.weight[:, :, 0, 0]
        return torch.einsum("oc,bcn->bno", w, t.flatten(2)) + conv.bias

    expected = explicit_attention(project(attn.query, x), project(attn.key, y),
                                  project(attn.value, x))  # (B, N, C)
    expected = expected.transpose(1, 2).reshape(2, 16, 5, 3)
    for impl in ATTENTION_IMPLS:
        attn.impl = impl
        attn.chunk = 4
        torch.testing.assert_close(attn(x, y), expected, atol=1e-10, rtol=1e-10)
    # swapping the roles gives another result (the op is not symmetric)
    assert (attn(y, x) - expected).abs().max() > 1e-3


def test_cross_attention_shape_check():
    attn = CrossAttention(16, qk_reduction=4)
    with pytest.raises(ValueError, match="same shape"):
        attn(torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 2))


@pytest.mark.parametrize("override, scales", [
    ("model.generator.scales=[1,2]", (1, 2)),
    ("model.generator.enhanced_attention=true", (1,)),
])
def test_factory_builds_xingganpp_attention(repo_root, override, scales):
    from xinggan.models.multiscale_attention import MultiScaleCrossAttention

    cfg = load_config(repo_root / "configs" / "market.yaml", [override])
    attn = build_cross_attention(cfg.model.generator, 256, (32, 16))
    assert isinstance(attn, MultiScaleCrossAttention)
    assert tuple(attn.scales) == scales


def test_factory_builds_released_projections(repo_root):
    cfg = load_config(repo_root / "configs" / "market.yaml")
    attn = build_cross_attention(cfg.model.generator, 256, (32, 16))
    assert isinstance(attn, CrossAttention)
    assert attn.query.weight.shape == (32, 256, 1, 1)
    assert attn.key.weight.shape == (32, 256, 1, 1)
    assert attn.value.weight.shape == (256, 256, 1, 1)
    assert attn.impl == "auto"


def test_chunked_attention_gradcheck():
    """The hand-written backward of the memory-efficient path, against finite differences."""
    q, k, v = (t.requires_grad_() for t in random_qkv(torch.float64, n=13, d=3, c=5))
    assert torch.autograd.gradcheck(
        lambda q, k, v: dot_product_attention(q, k, v, "chunked", chunk=4), (q, k, v))


def _saved_tensors(impl: str, n: int, chunk: int) -> list[tuple[int, ...]]:
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    q, k, v = (t.requires_grad_() for t in random_qkv(torch.float32, n=n, d=8, c=32, b=1))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        dot_product_attention(q, k, v, impl, chunk=chunk)
    return shapes


def test_chunked_attention_keeps_no_n_by_n_map_for_backward():
    n = 300
    big = [s for s in _saved_tensors("reference", n, 64) if s.count(n) >= 2]
    assert big, "the reference path keeps its N x N softmax"  # the check below can fail
    for shape in _saved_tensors("chunked", n, 64):
        assert shape.count(n) < 2 and torch.Size(shape).numel() <= n * 32, shape


def test_auto_is_chunked_on_cpu():
    q, k, v = (t.requires_grad_() for t in random_qkv(torch.float32, n=10))
    out = dot_product_attention(q, k, v, "auto")
    assert type(out.grad_fn).__name__.startswith("ChunkedAttention")


def test_sdpa_matches_reference_at_market_size():
    """The released sizes (N = 512, d = 32, C = 256) in float32, through the module."""
    torch.manual_seed(1)
    attn = CrossAttention(256)
    # trained-like scale: energies of a few units, not saturating the softmax completely
    with torch.no_grad():
        for conv in (attn.query, attn.key, attn.value):
            conv.weight.normal_(0, 0.05)
    x, y = torch.randn(2, 1, 256, 32, 16).unbind(0)
    with torch.no_grad():
        outs = {}
        for impl in ATTENTION_IMPLS:
            attn.impl, attn.chunk = impl, 100
            outs[impl] = attn(x, y)
    torch.testing.assert_close(outs["sdpa"], outs["reference"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs["chunked"], outs["reference"], atol=1e-5, rtol=1e-5)
    assert F.mse_loss(outs["reference"], torch.zeros_like(outs["reference"])) > 1e-4


def test_chunked_under_bf16_autocast_matches_reference_precision():
    """Under autocast the chunked path computes as autocast computes the reference (products in
    bfloat16, softmax in float32): the same forward values up to bfloat16 rounding (a product
    over a chunk of queries may be blocked differently from the product over all of them, so a
    few outputs can round to a neighbouring bfloat16 value), and gradients no further from the
    float64 truth than the reference's own."""
    base = random_qkv(torch.float64, n=300, d=32, c=64)
    go = torch.linspace(-1, 1, 2 * 300 * 64, dtype=torch.float64).view(2, 300, 64)
    q64, k64, v64 = (t.clone().requires_grad_() for t in base)
    out64 = dot_product_attention(q64, k64, v64, "reference")
    out64.backward(go)
    truth = [out64.detach(), q64.grad, k64.grad, v64.grad]

    def run(impl):
        q, k, v = (t.float().requires_grad_() for t in base)  # float32 in, as convs hand it
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = dot_product_attention(q, k, v, impl, chunk=128)
        assert out.dtype == torch.bfloat16
        out.float().backward(go.float())
        return [out.detach().float(), q.grad, k.grad, v.grad]

    ref, chunked = run("reference"), run("chunked")
    differ = (chunked[0] != ref[0]).float().mean().item()
    assert differ < 0.01, f"{differ:.2%} of the outputs differ from the reference's"
    bf16_ulp = 2.0 ** -7  # spacing of bfloat16 values relative to their magnitude
    assert ((chunked[0] - ref[0]).abs() <= 2 * bf16_ulp * ref[0].abs().clamp_min(2.0 ** -6)).all()
    for name, c, r, t in zip(("out", "dq", "dk", "dv"), chunked, ref, truth):
        scale = t.abs().max()
        err_c = (c.double() - t).abs().max() / scale
        err_r = (r.double() - t).abs().max() / scale
        assert err_c <= 1.25 * err_r + 1e-3, (name, err_c.item(), err_r.item())


def test_sdpa_kernel_probe_off_cuda_warns_and_falls_back(monkeypatch):
    """``auto`` on CUDA asks PyTorch which fused SDPA kernels take the tensors; off CUDA the
    probe itself answers no for every kernel, which exercises the no-kernel branch: a warning,
    a cached answer, and no second warning for the same shape."""
    monkeypatch.setattr(attention, "SDPA_KERNELS", {})
    q, k, v = random_qkv(torch.float32, n=12)
    q4, k4, v4 = (t.unsqueeze(1) for t in (q, k, v))
    assert attention.sdpa_kernels(q4, k4, v4) == {"flash": False, "efficient": False,
                                                  "cudnn": False}
    # the PyTorch calls the probe makes on CUDA exist with this signature
    params = torch.backends.cuda.SDPAParams(q4, k4, v4, None, 0.0, False, False)
    assert torch.backends.cuda.can_use_efficient_attention(params) is False
    assert torch.backends.cuda.can_use_flash_attention(params) is False
    with pytest.warns(UserWarning, match="using 'chunked'"):
        assert attention._fused_backends(q, k, v) == []
    assert len(attention.SDPA_KERNELS) == 1
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert attention._fused_backends(q, k, v) == []
    assert attention._resolve("auto", q, k, v)[0] == "chunked"


def test_explicit_impl_is_honoured_where_auto_picks_another(monkeypatch):
    """On CPU ``auto`` runs the chunked kernel and never calls SDPA; an explicit ``sdpa`` still
    runs PyTorch's SDPA there, and ``reference`` / ``chunked`` do not call it."""
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        calls.append(args[0].shape)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", counting_sdpa)
    q, k, v = random_qkv(torch.float64, n=12)
    expected = torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v  # no 1/sqrt(d) scaling
    assert attention._resolve("auto", q, k, v)[0] == "chunked"
    for impl, runs_sdpa in (("auto", False), ("chunked", False), ("reference", False),
                            ("sdpa", True)):
        calls.clear()
        torch.testing.assert_close(dot_product_attention(q, k, v, impl), expected)
        assert bool(calls) is runs_sdpa, impl


# --------------------------------------------------------------------------------------
# auto on CUDA: SDPA restricted to the fused kernels the probe found
# --------------------------------------------------------------------------------------


def _enabled_sdpa_backends() -> set:
    cuda = torch.backends.cuda
    return {name for name, on in (("flash", cuda.flash_sdp_enabled()),
                                  ("efficient", cuda.mem_efficient_sdp_enabled()),
                                  ("math", cuda.math_sdp_enabled()),
                                  ("cudnn", cuda.cudnn_sdp_enabled())) if on}


@pytest.fixture
def fake_cuda_sdpa(monkeypatch):
    """``auto`` as on a CUDA machine, on CPU tensors: tensors report device ``cuda``, PyTorch's
    ``can_use_*`` answer what ``kernels`` says, and ``scaled_dot_product_attention`` records
    which backends are enabled when it is called (and returns the explicit formula)."""
    kernels = {"flash": False, "efficient": False, "cudnn": False}
    calls = []
    monkeypatch.setattr(attention, "SDPA_KERNELS", {})
    monkeypatch.setattr(torch.Tensor, "device", property(lambda self: torch.device("cuda", 0)))
    cuda = torch.backends.cuda
    for name in kernels:
        monkeypatch.setattr(cuda, f"can_use_{name}_attention",
                            lambda params, debug=False, name=name: kernels[name])

    def sdpa(q, k, v, *args, scale=None, **kwargs):
        calls.append(_enabled_sdpa_backends())
        return explicit_attention(q.squeeze(1), k.squeeze(1), v.squeeze(1)).unsqueeze(1)

    monkeypatch.setattr(F, "scaled_dot_product_attention", sdpa)
    return kernels, calls


@pytest.mark.parametrize("found, expected", [
    ({"flash": False, "efficient": True, "cudnn": False}, {"efficient"}),
    ({"flash": False, "efficient": True, "cudnn": True}, {"efficient"}),
    ({"flash": True, "efficient": True, "cudnn": True}, {"flash", "efficient"}),
])
def test_auto_on_cuda_runs_sdpa_only_with_the_probed_fused_kernels(fake_cuda_sdpa, found,
                                                                   expected):
    """SDPA tries flash, memory-efficient, math, cuDNN in that order; ``auto`` must not leave the
    math path (or cuDNN, which it does not count) enabled behind the kernels it probed."""
    kernels, calls = fake_cuda_sdpa
    kernels.update(found)
    before = _enabled_sdpa_backends()
    q, k, v = random_qkv(torch.float32, n=12)
    dot_product_attention(q, k, v, "auto")
    assert calls == [expected]
    assert _enabled_sdpa_backends() == before  # the global switches are put back
    # under torch.compile the eager answer for the same shapes is reused, with the same limit
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.compiler, "is_compiling", lambda: True)
        dot_product_attention(q, k, v, "auto")
    assert calls == [expected, expected]


def test_auto_on_cuda_does_not_run_sdpa_when_only_cudnn_accepts(fake_cuda_sdpa):
    """cuDNN attention does not count for ``auto`` (PyTorch ranks it after the math path):
    a shape only cuDNN accepts runs ``chunked``, with a warning saying so."""
    kernels, calls = fake_cuda_sdpa
    kernels["cudnn"] = True
    q, k, v = (t.requires_grad_() for t in random_qkv(torch.float32, n=12))
    with pytest.warns(UserWarning, match="cuDNN would"):
        out = dot_product_attention(q, k, v, "auto")
    assert calls == []
    assert type(out.grad_fn).__name__.startswith("ChunkedAttention")
