"""Enhanced Attention (EA): refining the query-key correlation matrix before the softmax.

XingGAN++ (Tang, Shao, Sebe, Van Gool; IEEE TPAMI 2025, arXiv 2501.08900) adds an
"Enhanced Attention" module to its cross-attention blocks because, in plain cross-attention,
every query-key correlation is computed on its own, which gives noisy and ambiguous attention
weights.  Only the paper's abstract was available to us and no code is public: this module is
**our reading of XingGAN++, not the authors' code** (see ``docs/xingganpp.md``, section 2).
It follows the "attention in attention" idea of Gao et al. (ECCV 2022): the
correlation vectors are refined by an inner attention so that they can agree with each other.

For one window with ``Nq`` queries and ``Nk`` keys::

    C        = Q^T K                                   (Nq x Nk), no 1/sqrt(d) scaling
    tokens   = the columns C[:, j], one per key        (Nk tokens of length Nq)
    q' = LN(Wq C),  k' = LN(Wk C),  v' = Wv C          (Nk x d each; Wq, Wk, Wv: Nq -> d)
    R        = softmax(q' k'^T / sqrt(d)) v'           (Nk x d), inner attention over the tokens
    C'       = C + (R Wo^T)^T                          (Nq x Nk; Wo: d -> Nq)
    out      = softmax_keys(C') V

Design choices (ours):
- ``Wo`` is **zero-initialised**, so at initialisation ``C' = C`` and EA is an identity
  refinement: a block with EA starts exactly as the plain block (and the XingGAN++ generator
  exactly as the same network without EA).  Its gradient is not zero, so EA switches itself on
  during training.  (While ``Wo`` is zero, ``Wq``, ``Wk``, ``Wv`` get no gradient; this is the
  same situation as the zero-initialised residual scale ``gamma`` of every Xing block.)
- ``Wo`` has no bias: a bias would add one constant per query row of ``C'``, which the softmax
  over keys ignores.  ``Wq``, ``Wk``, ``Wv`` have biases.
- The weights are plain parameters of this module (not ``nn.Linear`` children), so generic
  weight initialisers that visit ``Conv``/``Linear`` modules (as the pix2pix lineage does) leave
  the zero ``Wo`` alone.  ``reset_parameters()`` restores the documented initialisation.
- ``Nq`` is fixed by the feature grid and the window scale, so the maps are sized when the
  module is built; a window of another size is an error.

The correlation matrix must exist explicitly, so a window with EA cannot use the fused
``scaled_dot_product_attention`` kernel.  The computation keeps two full ``(windows, Nq, Nk)``
tensors for the backward pass (``C`` and the softmax output): the token maps are matrix
products on ``C`` in its natural layout (no transposed copy), and the refinement is added with
one ``baddbmm`` (no separate full-size temporary for ``R^T``).

Float16: ``C`` is not scaled, so its entries can exceed float16's largest value (65504), and so
can the token maps ``W C`` and ``C'`` built on it.  Where the products would run in float16
(float16 inputs or float16 autocast), ``C``, its refinement and the softmax are computed in
float32 from the float16 queries and keys (``|q . k| <= d * 65504^2`` fits float32 for any d);
only the final product of the attention weights (in [0, 1]) with the values runs in float16.
In bfloat16 and float32 nothing changes (bfloat16 has float32's exponent range; see
``xinggan/ops/attention.py``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xinggan.ops.attention import energy_dtype, product_dtype


class EnhancedAttention(nn.Module):
    """Correlation refinement + softmax attention for one window size (batched over windows).

    Args:
        num_queries: ``Nq``, the number of query positions in one window (the token length).
        num_keys: ``Nk``, the number of key positions in one window (the number of tokens).
        dim: ``d``, the width of the inner attention (``enhanced_attention_dim``).
    """

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
        # token maps Nq -> d, stored as (d, Nq) so that W @ C embeds every column of C
        self.query_weight = nn.Parameter(torch.empty(dim, num_queries))
        self.query_bias = nn.Parameter(torch.empty(dim))
        self.key_weight = nn.Parameter(torch.empty(dim, num_queries))
        self.key_bias = nn.Parameter(torch.empty(dim))
        self.value_weight = nn.Parameter(torch.empty(dim, num_queries))
        self.value_bias = nn.Parameter(torch.empty(dim))
        self.query_norm = nn.LayerNorm(dim)
        self.key_norm = nn.LayerNorm(dim)
        # back-projection d -> Nq, stored as (Nq, d); zero at initialisation (identity EA)
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

    # ------------------------------------------------------------------------------
    def _check(self, correlation: torch.Tensor) -> None:
        if correlation.dim() != 3 or correlation.shape[1:] != (self.num_queries, self.num_keys):
            raise ValueError(
                f"EnhancedAttention was built for windows of {self.num_queries} queries x "
                f"{self.num_keys} keys, got a correlation matrix of shape "
                f"{tuple(correlation.shape)}; the feature grid or the scale differs from the "
                f"one given at build time"
            )

    def refinement(self, correlation: torch.Tensor) -> torch.Tensor:
        """The inner attention's output ``R`` for correlation matrices (W, Nq, Nk) -> (W, Nk, d)."""
        self._check(correlation)
        windows = correlation.shape[0]
        # the three token maps as one (3d, Nq) matrix: one batched product reads C once, in its
        # own layout (no transposed copy of C is made or kept for the backward pass)
        weight = torch.cat([self.query_weight, self.key_weight, self.value_weight])
        bias = torch.cat([self.query_bias, self.key_bias, self.value_bias])
        weight = weight.to(correlation.dtype).expand(windows, -1, -1)  # (W, 3d, Nq)
        tokens = torch.bmm(weight, correlation) + bias.to(correlation.dtype)[:, None]  # (W, 3d, Nk)
        tokens = tokens.transpose(1, 2)  # (W, Nk, 3d): one row per key
        tokens_query, tokens_key, tokens_value = tokens.split(self.dim, dim=-1)
        tokens_query = self.query_norm(tokens_query)  # (W, Nk, d)
        tokens_key = self.key_norm(tokens_key)  # (W, Nk, d)
        tokens_value = tokens_value.contiguous()  # fused kernels need unit stride in d
        # standard scaled attention among the Nk tokens (scale 1/sqrt(d)); 4-D (W, 1, Nk, d)
        # inputs so that fused kernels (which never store the Nk x Nk matrix) can be used
        inner = F.scaled_dot_product_attention(tokens_query.unsqueeze(1), tokens_key.unsqueeze(1),
                                               tokens_value.unsqueeze(1))
        return inner.squeeze(1)

    def refine(self, correlation: torch.Tensor) -> torch.Tensor:
        """``C' = C + (R Wo^T)^T`` for correlation matrices of shape (W, Nq, Nk)."""
        inner = self.refinement(correlation)  # (W, Nk, d)
        output_weight = self.output_weight.to(inner.dtype).expand(inner.shape[0], -1, -1)
        # C + Wo @ R^T: (W, Nq, d) @ (W, d, Nk) added onto C in one kernel
        return torch.baddbmm(correlation, output_weight, inner.transpose(1, 2))

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Attention with a refined correlation matrix.

        Args:
            query: (W, Nq, dq) queries of W windows (batch and windows folded together).
            key: (W, Nk, dq) keys.
            value: (W, Nk, dv) values.
        Returns:
            (W, Nq, dv): ``softmax_keys(C') V`` with ``C = Q K^T`` unscaled, as released.
        """
        dtype = product_dtype(query)
        with torch.autocast(query.device.type, enabled=False):  # C and C' in float32 or wider
            query, key = (t.to(dtype).to(energy_dtype(dtype)) for t in (query, key))
            correlation = torch.bmm(query, key.transpose(1, 2))  # (W, Nq, Nk)
            attention = torch.softmax(self.refine(correlation), dim=-1)
        return torch.bmm(attention.to(dtype), value)  # under autocast, or in value's dtype
