"""Dot-product attention kernels behind the paper's SA / AS blocks: ``softmax(q k^T) v``.

The attention maths of XingGAN (no ``1/sqrt(d)`` scaling, softmax over the key axis) in
numerically equivalent implementations, chosen by ``model.generator.attention_impl``:

- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)``, so GPUs use
  the memory-efficient kernels (the value width C differs from the query/key width C/8, which the
  math and memory-efficient backends accept; on CPU this width mismatch rules out PyTorch's
  fused CPU kernel, so SDPA runs its math path there and keeps the N x N maps for backward);
- ``reference``: explicit ``bmm`` + ``softmax``, the N x N matrix in memory;
- ``chunked``: memory-efficient attention in plain ops: the forward runs over chunks of
  ``attention_chunk`` queries and keeps only q, k, v, the output and one log-sum-exp per query;
  the backward recomputes each chunk's softmax from them.  No N x N matrix outlives a chunk, in
  the forward or the backward (:class:`ChunkedAttention`);
- ``auto``: ``chunked`` on CPU tensors; on CUDA ``sdpa`` when PyTorch reports that one of its
  fused kernels (memory-efficient, flash or cuDNN) accepts these tensors, else ``chunked``, with
  a warning, so the N x N maps are never kept behind the user's back.  What it found for each
  shape and dtype is kept in :data:`SDPA_KERNELS` (the benchmark reports it).  Under
  ``torch.compile`` the answer of an eager pass with the same shapes is reused (the training
  loop runs one before compiling); without one, ``chunked``.

``tests/test_attention.py`` checks every implementation against the reference path, in float32,
float64 and under autocast, forward and backward.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

ATTENTION_IMPLS = ("auto", "sdpa", "reference", "chunked")

# (device, dtype, q shape, k shape, v shape, grad) -> {"flash": bool, "efficient": bool,
# "cudnn": bool}: the fused SDPA kernels PyTorch said it could use, filled by ``auto`` on CUDA.
SDPA_KERNELS: dict = {}


class ChunkedAttention(torch.autograd.Function):
    """softmax(q k^T) v over query chunks, with a backward that recomputes the softmax.

    Saved for backward: q, k, v and the row log-sum-exp L (B, Nq); not the output.  Backward,
    per chunk c of queries: P = exp(q_c k^T - L_c); dV += P^T dO_c; dP = dO_c V^T;
    dS = P * (dP - rowsum(P * dP)); dq_c = dS k; dk += dS^T q_c (rowsum(P * dP) equals
    rowsum(dO * O), so the output need not be kept).  Memory O(chunk * Nk) on top of the
    inputs, at the cost of one extra (chunk x d) x (d x Nk) product per chunk.

    Runs without autocast (:func:`dot_product_attention` casts the inputs as autocast would).
    With half-precision inputs the products run in that precision, as autocast runs the
    reference's ``bmm``, while the softmax, L, P, dS and the dK / dV sums are kept in float32,
    as autocast keeps the reference's softmax and its backward.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, chunk: int) -> Tensor:
        b, nq, _ = q.shape
        acc = torch.promote_types(q.dtype, torch.float32)  # softmax precision
        keep = any(ctx.needs_input_grad[:3])  # a gradient is wanted: keep the log-sum-exp
        k_t = k.transpose(1, 2)

        def block(q_c):
            energy = torch.bmm(q_c, k_t).to(acc)  # (B, chunk, Nk)
            # the same softmax and product as the reference path, so outputs match it exactly
            out_c = torch.bmm(torch.softmax(energy, dim=-1).to(v.dtype), v)
            return out_c, (torch.logsumexp(energy, dim=-1, keepdim=True) if keep else None)

        if nq <= chunk:  # one block (e.g. every XingGAN++ window): no copies into buffers
            out, lse = block(q)
        else:
            out = v.new_empty(b, nq, v.shape[-1])
            lse = q.new_empty(b, nq, 1, dtype=acc) if keep else None
            for start in range(0, nq, chunk):
                sl = slice(start, start + chunk)
                out[:, sl], lse_c = block(q[:, sl])
                if keep:
                    lse[:, sl] = lse_c
        if keep:
            ctx.save_for_backward(q, k, v, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        q, k, v, lse = ctx.saved_tensors
        chunk, dt, acc = ctx.chunk, q.dtype, lse.dtype
        grad_out = grad_out.to(v.dtype).contiguous()
        grad_q = torch.empty_like(q)
        grad_k = torch.zeros_like(k, dtype=acc)
        grad_v = torch.zeros_like(v, dtype=acc)
        k_t, v_t = k.transpose(1, 2), v.transpose(1, 2)
        for start in range(0, q.shape[1], chunk):
            sl = slice(start, start + chunk)
            q_c, go_c = q[:, sl], grad_out[:, sl]
            if dt == acc:  # float32 / float64: the chunk's softmax and products in place
                p = torch.baddbmm(lse[:, sl].neg(), q_c, k_t).exp_()
                grad_v.baddbmm_(p.transpose(1, 2), go_c)
                grad_s = torch.bmm(go_c, v_t).mul_(p)  # P * dP
            else:  # half precision: products in it, the softmax and sums in float32
                p = (torch.bmm(q_c, k_t).to(acc) - lse[:, sl]).exp_()
                grad_v += torch.bmm(p.to(dt).transpose(1, 2), go_c)
                grad_s = torch.bmm(go_c, v_t).to(acc).mul_(p)
            delta = grad_s.sum(-1, keepdim=True)  # rowsum(P * dP)
            grad_s.addcmul_(p, delta, value=-1)  # P * (dP - rowsum(P * dP))
            grad_s = grad_s.to(dt)
            grad_q[:, sl] = torch.bmm(grad_s, k)
            if dt == acc:
                grad_k.baddbmm_(grad_s.transpose(1, 2), q_c)
            else:
                grad_k += torch.bmm(grad_s.transpose(1, 2), q_c)
        return grad_q, grad_k.to(dt), grad_v.to(v.dtype), None


def sdpa_kernels(q: Tensor, k: Tensor, v: Tensor) -> dict:
    """Which fused kernels ``scaled_dot_product_attention`` could run on these ``(B, H, N, d)``
    tensors, as PyTorch itself decides (``torch.backends.cuda.can_use_*``; all False off CUDA).
    ``scaled_dot_product_attention`` falls back to its math path, which keeps the N x N
    attention maps, when none of them can."""
    from torch.backends import cuda as backends

    if q.device.type != "cuda":
        return {"flash": False, "efficient": False, "cudnn": False}
    params = backends.SDPAParams(q, k, v, None, 0.0, False, False)
    return {"flash": backends.can_use_flash_attention(params),
            "efficient": backends.can_use_efficient_attention(params),
            "cudnn": backends.can_use_cudnn_attention(params)}


def _probe_key(q: Tensor, k: Tensor, v: Tensor) -> tuple:
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    return (str(q.device), str(q.dtype), tuple(q.shape), tuple(k.shape), tuple(v.shape), grad)


def _fused_sdpa_ok(q: Tensor, k: Tensor, v: Tensor) -> bool:
    """For ``(B, N, d)`` tensors as :func:`dot_product_attention` passes them to SDPA."""
    key = _probe_key(q, k, v)
    found = SDPA_KERNELS.get(key)
    if found is None:  # once per shape: the (B, 1, N, d) contiguous layout the SDPA path uses
        found = SDPA_KERNELS[key] = sdpa_kernels(*(t.unsqueeze(1).contiguous() for t in (q, k, v)))
        if not any(found.values()):
            warnings.warn(
                f"attention_impl 'auto': no fused scaled_dot_product_attention kernel accepts "
                f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} ({q.dtype}); "
                f"using 'chunked' instead of SDPA's math path", stacklevel=4)
    return any(found.values())


def resolve_attention_impl(impl: str, q: Tensor, k: Tensor, v: Tensor) -> str:
    """The implementation ``impl`` stands for on these ``(B, N, d)`` tensors (``auto``:
    ``chunked`` on CPU; on CUDA ``sdpa`` when a fused kernel takes them, else ``chunked``)."""
    if impl != "auto":
        return impl
    if q.device.type == "cpu":
        return "chunked"
    if q.device.type != "cuda":
        return "sdpa"  # other accelerators pick their own kernels
    if torch.compiler.is_compiling():
        # While tracing, the tensors hold no data to probe: take the answer an eager pass of the
        # same shapes found, else chunked, never SDPA's math path with its N x N maps.
        found = SDPA_KERNELS.get(_probe_key(q, k, v))
        return "sdpa" if found and any(found.values()) else "chunked"
    return "sdpa" if _fused_sdpa_ok(q, k, v) else "chunked"


def dot_product_attention(q: Tensor, k: Tensor, v: Tensor, impl: str = "sdpa",
                          chunk: int = 1024) -> Tensor:
    """softmax(q k^T) v without scaling.

    q: (B, Nq, d), k: (B, Nk, d), v: (B, Nk, Cv) -> (B, Nq, Cv).  The softmax runs over the
    key axis.  ``impl`` picks the implementation (see the module docstring); all three agree to
    floating-point rounding.
    """
    impl = resolve_attention_impl(impl, q, k, v)
    if impl == "sdpa":
        # (B, 1, N, d) with a unit-stride last axis: what the fused GPU kernels accept
        # (otherwise PyTorch falls back to the math path and its N x N matrix).
        q, k, v = (t.unsqueeze(1).contiguous() for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v, scale=1.0).squeeze(1)
    if impl == "reference":
        energy = torch.bmm(q, k.transpose(1, 2))  # (B, Nq, Nk)
        return torch.bmm(torch.softmax(energy, dim=-1), v)
    if impl == "chunked":
        if chunk < 1:
            raise ValueError(f"attention chunk must be positive, got {chunk}")
        device = q.device.type
        if torch.is_autocast_enabled(device):  # cast as autocast casts the reference's bmm
            dtype = torch.get_autocast_dtype(device)
            q, k, v = (t.to(dtype) for t in (q, k, v))
            with torch.autocast(device, enabled=False):
                return ChunkedAttention.apply(q, k, v, chunk)
        return ChunkedAttention.apply(q, k, v, chunk)
    raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
