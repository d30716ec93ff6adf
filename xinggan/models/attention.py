"""Cross-attention of the Xing blocks (paper Sec. 3.1-3.2): ``attn(x, y)`` with queries and
values from x and keys from y serves SA (x = A, y = S) and AS (the mirror).  The product
``softmax(Q^T K) V``, unscaled as released, is :func:`xinggan.ops.attention.dot_product_attention`.
"""
from __future__ import annotations

from torch import Tensor, nn

from xinggan.ops.attention import ATTENTION_IMPLS, dot_product_attention

class CrossAttention(nn.Module):
    """``attn(x, y)``: queries and values from ``x``, keys from ``y``; (B, C, h, w) -> same.

    The output is the attended values only; the caller adds the residual.
    """

    def __init__(self, channels: int, qk_reduction: int = 8, impl: str = "sdpa",
                 chunk: int = 1024) -> None:
        super().__init__()
        if channels % qk_reduction:
            raise ValueError(f"qk_reduction {qk_reduction} does not divide {channels} channels")
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
        # All three projections carry a bias in the released code, whatever the norm.
        self.query = nn.Conv2d(channels, channels // qk_reduction, kernel_size=1)
        self.key = nn.Conv2d(channels, channels // qk_reduction, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.impl = impl
        self.chunk = chunk

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape:
            raise ValueError(
                f"CrossAttention: x and y must have the same shape, got {tuple(x.shape)} and "
                f"{tuple(y.shape)}"
            )
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, N, C/r)
        k = self.key(y).flatten(2).transpose(1, 2)  # (B, N, C/r)
        v = self.value(x).flatten(2).transpose(1, 2)  # (B, N, C)
        out = dot_product_attention(q, k, v, self.impl, self.chunk)  # (B, N, C)
        return out.transpose(1, 2).reshape(b, c, h, w)

    def extra_repr(self) -> str:
        return f"impl={self.impl!r}, chunk={self.chunk}"
