"""The multi-head shell every softmax-family attention shares: q, k, v projections, RoPE, output.

A subclass implements `attend(q, k, v) -> o` on [B, H, T, head_dim] tensors.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..layers.rope import RotaryEmbedding


class HeadAttention(nn.Module):
    """qkv = Linear(d, 3d), out = Linear(d, d), no biases; RoPE on q and k when asked (its cos and sin tables
    built for max_len positions, when given: layers/rope.py)."""

    def __init__(self, d: int, n_heads: int, *, causal: bool, rope: bool, max_len: int | None = None):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d_model {d} is not divisible by n_heads {n_heads}")
        self.n_heads, self.head_dim = n_heads, d // n_heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.rope = RotaryEmbedding(self.head_dim, max_len=max_len) if rope else None
        self.causal = causal

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def gradient_probe(self) -> dict[str, list[torch.Tensor]]:
        """After a backward pass: the gradients of the q and k projections, what shapes the attention
        weights (tests/test_models.py checks they are not negligible against the model's)."""
        return {"q/k projections": [self.qkv.weight.grad[:2 * self.qkv.weight.shape[1]]]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.rope is not None:
            q, k = self.rope(q, k)
        o = self.attend(q, k, v).to(v.dtype)
        return self.out(o.transpose(1, 2).reshape(B, T, -1))
