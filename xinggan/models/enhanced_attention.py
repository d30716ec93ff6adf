"""Enhanced Attention (XingGAN++, our reading): the correlations refined before the softmax.

``C = Q K^T``; the columns of C attend to each other (``R``); ``C' = C + (R Wo^T)^T``;
``out = softmax_keys(C') V``.  ``Wo`` starts at zero (EA starts as the identity).  Formulas,
design choices and cost: ``docs/xingganpp.md``, section 2.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xinggan.ops.attention import energy_dtype, product_dtype


class EnhancedAttention(nn.Module):
    """EA for windows of ``num_queries`` x ``num_keys`` positions, inner width ``dim``."""

    def __init__(self, num_queries: int, num_keys: int, dim: int = 64) -> None:
        super().__init__()
        if num_queries < 1 or num_keys < 1 or dim < 1:
            raise ValueError(
                f"EnhancedAttention: num_queries, num_keys and dim must be positive, got "
                f"{num_queries}, {num_keys}, {dim}"
            )
        self.num_queries = num_queries
        self.num_keys = num_keys
        self.dim = dim
        # token maps Nq -> d as (d, Nq): W @ C embeds every column of C
        self.query_weight = nn.Parameter(torch.empty(dim, num_queries))
        self.query_bias = nn.Parameter(torch.empty(dim))
        self.key_weight = nn.Parameter(torch.empty(dim, num_queries))
        self.key_bias = nn.Parameter(torch.empty(dim))
        self.value_weight = nn.Parameter(torch.empty(dim, num_queries))
        self.value_bias = nn.Parameter(torch.empty(dim))
        self.query_norm = nn.LayerNorm(dim)
        self.key_norm = nn.LayerNorm(dim)
        self.output_weight = nn.Parameter(torch.empty(num_queries, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's default initialisation for the token maps; zero back-projection."""
        bound = 1.0 / math.sqrt(self.num_queries)
        for weight, bias in ((self.query_weight, self.query_bias),
                             (self.key_weight, self.key_bias),
                             (self.value_weight, self.value_bias)):
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            nn.init.uniform_(bias, -bound, bound)
        self.query_norm.reset_parameters()
        self.key_norm.reset_parameters()
        nn.init.zeros_(self.output_weight)

    def extra_repr(self) -> str:
        return f"num_queries={self.num_queries}, num_keys={self.num_keys}, dim={self.dim}"

    def _check(self, correlation: torch.Tensor) -> None:
        if correlation.dim() != 3 or correlation.shape[1:] != (self.num_queries, self.num_keys):
            raise ValueError(
                f"EnhancedAttention was built for windows of {self.num_queries} queries x "
                f"{self.num_keys} keys, got a correlation matrix of shape "
                f"{tuple(correlation.shape)}; the feature grid or the scale differs from the "
                f"one given at build time"
            )

    def refinement(self, correlation: torch.Tensor) -> torch.Tensor:
        """The inner attention's output ``R``: (W, Nq, Nk) -> (W, Nk, d)."""
        self._check(correlation)
        windows = correlation.shape[0]
        # the three token maps in one product that reads C in its own layout
        weight = torch.cat([self.query_weight, self.key_weight, self.value_weight])
        bias = torch.cat([self.query_bias, self.key_bias, self.value_bias])
        weight = weight.to(correlation.dtype).expand(windows, -1, -1)  # (W, 3d, Nq)
        tokens = torch.bmm(weight, correlation) + bias.to(correlation.dtype)[:, None]  # (W, 3d, Nk)
        tokens = tokens.transpose(1, 2)  # (W, Nk, 3d)
        tokens_query, tokens_key, tokens_value = tokens.split(self.dim, dim=-1)
        tokens_query = self.query_norm(tokens_query)
        tokens_key = self.key_norm(tokens_key)
        tokens_value = tokens_value.contiguous()  # fused kernels need unit stride in d
        inner = F.scaled_dot_product_attention(tokens_query.unsqueeze(1), tokens_key.unsqueeze(1),
                                               tokens_value.unsqueeze(1))
        return inner.squeeze(1)

    def refine(self, correlation: torch.Tensor) -> torch.Tensor:
        """``C' = C + (R Wo^T)^T`` for (W, Nq, Nk) correlations, in one ``baddbmm``."""
        inner = self.refinement(correlation)  # (W, Nk, d)
        output_weight = self.output_weight.to(inner.dtype).expand(inner.shape[0], -1, -1)
        return torch.baddbmm(correlation, output_weight, inner.transpose(1, 2))

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """(W, Nq, dq), (W, Nk, dq), (W, Nk, dv) -> (W, Nq, dv): ``softmax_keys(C') V``."""
        dtype = product_dtype(query)
        with torch.autocast(query.device.type, enabled=False):  # C and C' in float32 or wider
            query, key = (t.to(dtype).to(energy_dtype(dtype)) for t in (query, key))
            correlation = torch.bmm(query, key.transpose(1, 2))  # (W, Nq, Nk)
            attention = torch.softmax(self.refine(correlation), dim=-1)
        return torch.bmm(attention.to(dtype), value)  # under autocast, or in value's dtype
