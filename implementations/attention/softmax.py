"""Multi-head softmax attention, through PyTorch SDPA or materialised (the paper's 2022 condition)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .heads import HeadAttention

KERNELS = ("sdpa", "materialized")


def materialized_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v with the T x T matrix in memory; q, k, v: [B, H, T, D]."""
    scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[-2]
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.einsum("bhts,bhsd->bhtd", scores.softmax(dim=-1), v)


class MultiHeadAttention(HeadAttention):
    def __init__(self, d: int, n_heads: int, *, causal: bool, rope: bool, kernel: str = "sdpa",
                 max_len: int | None = None):
        if kernel not in KERNELS:
            raise ValueError(f"unknown attention kernel {kernel!r}; valid: {', '.join(KERNELS)}")
        super().__init__(d, n_heads, causal=causal, rope=rope, max_len=max_len)
        self.kernel = kernel

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.kernel == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return materialized_attention(q, k, v, self.causal)
