"""Dot-product attention behind the paper's SA / AS blocks: ``softmax(q k^T) v``, unscaled.

``model.generator.attention_impl`` picks ``sdpa`` (``F.scaled_dot_product_attention``, scale 1),
``reference`` (``bmm`` + ``softmax``), ``chunked`` (query chunks, softmax recomputed in backward:
no N x N matrix outlives a chunk) or ``auto``: ``chunked`` on CPU; on CUDA ``sdpa`` restricted
to the flash or memory-efficient kernel PyTorch reports for the shapes, else ``chunked`` with a
warning, so SDPA never runs its math path unseen.

The unscaled energies ``q k^T`` are formed in float32 from half-precision q and k
(:func:`energy_dtype`): float16 would overflow and bfloat16 rounding shifts the softmax.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.backends import cuda as cuda_backends
from torch.nn.attention import SDPBackend, sdpa_kernel

ATTENTION_IMPLS = ("auto", "sdpa", "reference", "chunked")

# (device, dtype, shapes, grad) -> the fused SDPA kernels PyTorch can use, filled by ``auto``.
SDPA_KERNELS: dict = {}

# Kernels ``auto`` may run SDPA with, in PyTorch's priority order -> SDPBackend names.
AUTO_SDPA_BACKENDS = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION"}


def product_dtype(t: Tensor) -> torch.dtype:
    """The dtype a matrix product of ``t`` runs in here: the autocast dtype where autocast is on
    for its device (autocast leaves float64 alone), else ``t``'s own."""
    device = t.device.type
    if t.dtype != torch.float64 and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return t.dtype


def energy_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the unscaled energies ``q k^T`` are formed in when the product runs in
    ``dtype``: at least float32 (see the module docstring)."""
    return torch.promote_types(dtype, torch.float32)


def attention_energies(q: Tensor, k: Tensor) -> Tensor:
    """``q k^T`` for (B, Nq, d) and (B, Nk, d): (B, Nq, Nk), in :func:`energy_dtype` from q and k
    rounded as the current autocast rounds a product's inputs."""
    dtype = product_dtype(q)
    if energy_dtype(dtype) == dtype:
        return torch.bmm(q, k.transpose(1, 2))
    with torch.autocast(q.device.type, enabled=False):
        return torch.bmm(q.to(dtype).float(), k.to(dtype).float().transpose(1, 2))


class ChunkedAttention(torch.autograd.Function):
    """softmax(q k^T) v over query chunks, keeping q, k, v and the row log-sum-exp L.

    Backward per chunk c: P = exp(q_c k^T - L_c); dV += P^T dO_c; dS = P * (dP - rowsum(P * dP))
    with dP = dO_c V^T; dq_c = dS k; dk += dS^T q_c.  Energies, softmax and sums in float32.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, chunk: int) -> Tensor:
        b, nq, _ = q.shape
        acc = energy_dtype(q.dtype)  # energies and softmax: at least float32
        keep = any(ctx.needs_input_grad[:3])  # a gradient is wanted: keep the log-sum-exp
        k_t = k.to(acc).transpose(1, 2)

        def block(q_c):
            energy = torch.bmm(q_c.to(acc), k_t)  # (B, chunk, Nk)
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
        k_t, v_t = k.to(acc).transpose(1, 2), v.transpose(1, 2)
        for start in range(0, q.shape[1], chunk):
            sl = slice(start, start + chunk)
            q_c, go_c = q[:, sl], grad_out[:, sl]
            p = torch.baddbmm(lse[:, sl].neg(), q_c.to(acc), k_t).exp_()  # P, as in forward
            if dt == acc:  # float32 / float64: the chunk's products in place
                grad_v.baddbmm_(p.transpose(1, 2), go_c)
                grad_s = torch.bmm(go_c, v_t).mul_(p)  # P * dP
            else:  # half precision: products in it, the softmax and sums in float32
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
    """Which fused SDPA kernels PyTorch could run on these ``(B, H, N, d)`` tensors
    (``torch.backends.cuda.can_use_*``; all False off CUDA)."""
    if q.device.type != "cuda":
        return {"flash": False, "efficient": False, "cudnn": False}
    params = cuda_backends.SDPAParams(q, k, v, None, 0.0, False, False)
    return {"flash": cuda_backends.can_use_flash_attention(params),
            "efficient": cuda_backends.can_use_efficient_attention(params),
            "cudnn": cuda_backends.can_use_cudnn_attention(params)}


def auto_sdpa_backends(kernels: dict) -> list:
    """The ``SDPBackend`` members ``auto`` restricts SDPA to, given :func:`sdpa_kernels`' answer
    (empty: ``chunked``)."""
    return [getattr(SDPBackend, member) for name, member in AUTO_SDPA_BACKENDS.items()
            if kernels.get(name)]


def _probe_key(q: Tensor, k: Tensor, v: Tensor) -> tuple:
    """The dtype is the one SDPA runs in (under autocast, the autocast dtype)."""
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    return (str(q.device), str(product_dtype(q)), tuple(q.shape), tuple(k.shape),
            tuple(v.shape), grad)


def _fused_backends(q: Tensor, k: Tensor, v: Tensor) -> list:
    """The fused backends ``auto`` may run these ``(B, N, d)`` CUDA tensors with (probed once per
    shape; a warning when none)."""
    key = _probe_key(q, k, v)
    found = SDPA_KERNELS.get(key)
    if found is None:  # probed in the layout and dtype the SDPA path runs with
        found = SDPA_KERNELS[key] = sdpa_kernels(
            *(t.unsqueeze(1).to(product_dtype(t)).contiguous() for t in (q, k, v)))
        if not auto_sdpa_backends(found):
            only = " (cuDNN would; 'auto' does not run it)" if found.get("cudnn") else ""
            warnings.warn(
                f"attention_impl 'auto': no flash or memory-efficient "
                f"scaled_dot_product_attention kernel accepts q {tuple(q.shape)}, k "
                f"{tuple(k.shape)}, v {tuple(v.shape)} ({q.dtype}){only}; using 'chunked' "
                f"instead of SDPA's math path", stacklevel=4)
    return auto_sdpa_backends(found)


def _resolve(impl: str, q: Tensor, k: Tensor, v: Tensor) -> tuple[str, list | None]:
    """(implementation, SDPA backends to restrict to; None: SDPA chooses) for ``impl``."""
    if impl != "auto":
        return impl, None
    if q.device.type == "cpu":
        return "chunked", None
    if q.device.type != "cuda":
        return "sdpa", None  # other accelerators pick their own kernels
    if torch.compiler.is_compiling():
        # nothing to probe while tracing: an eager pass's answer for these shapes, else chunked
        backends = auto_sdpa_backends(SDPA_KERNELS.get(_probe_key(q, k, v)) or {})
    else:
        backends = _fused_backends(q, k, v)
    return ("sdpa", backends) if backends else ("chunked", None)


def dot_product_attention(q: Tensor, k: Tensor, v: Tensor, impl: str = "sdpa",
                          chunk: int = 1024) -> Tensor:
    """softmax(q k^T) v without scaling: q (B, Nq, d), k (B, Nk, d), v (B, Nk, Cv) -> (B, Nq, Cv),
    by the implementation ``impl`` (see the module docstring)."""
    impl, backends = _resolve(impl, q, k, v)
    if impl == "sdpa":
        # (B, 1, N, d) with a unit-stride last axis: what the fused GPU kernels accept
        q, k, v = (t.unsqueeze(1).contiguous() for t in (q, k, v))
        if backends is None:
            return F.scaled_dot_product_attention(q, k, v, scale=1.0).squeeze(1)
        with sdpa_kernel(backends):
            return F.scaled_dot_product_attention(q, k, v, scale=1.0).squeeze(1)
    if impl == "reference":
        energy = attention_energies(q, k)  # (B, Nq, Nk); float32 where float16 would overflow
        weights = torch.softmax(energy, dim=-1)
        if energy.dtype != product_dtype(q):  # formed wider than the products: back for "@ v"
            weights = weights.to(product_dtype(q))
        return torch.bmm(weights, v)
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
