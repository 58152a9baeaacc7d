"""Multi-head softmax attention, through PyTorch SDPA or materialised (the paper's 2022 condition)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers.rope import RotaryEmbedding

KERNELS = ("sdpa", "materialized")


def materialized_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v with the T x T matrix in memory; q, k, v: [B, H, T, D]."""
    scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[-2]
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.einsum("bhts,bhsd->bhtd", scores.softmax(dim=-1), v)


class MultiHeadAttention(nn.Module):
    def __init__(self, d: int, n_heads: int, *, causal: bool, rope: bool, kernel: str = "sdpa"):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d_model {d} is not divisible by n_heads {n_heads}")
        if kernel not in KERNELS:
            raise ValueError(f"unknown attention kernel {kernel!r}; valid: {', '.join(KERNELS)}")
        self.n_heads, self.head_dim = n_heads, d // n_heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.rope = RotaryEmbedding(self.head_dim) if rope else None
        self.causal, self.kernel = causal, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.rope is not None:
            q, k = self.rope(q, k)
        if self.kernel == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            o = materialized_attention(q, k, v, self.causal)
        return self.out(o.transpose(1, 2).reshape(B, T, -1))
