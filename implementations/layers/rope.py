"""Rotary position embedding (Su et al., 2021), applied to the last dimension of q and k.

Rotates pairs (x[..., i], x[..., i + d/2]) by angle pos * base^(-2i/d) ("half" layout).

With `max_len` (up to TABLE_MAX_BYTES of tables), the cos and sin tables of the first max_len positions are
computed once, where and when the module is built, and kept as non-persistent float32 buffers of
[max_len, dim / 2] (they move with the module and are not in its state dict). Compiled, the rotation then
reads them instead of recomputing cos and sin of every angle for every element it rotates (Inductor fuses
`arange`, `cos` and `sin` into the consuming kernel: per element of every head and sequence, a few tens of
instructions each). Without tables, or for longer sequences, they are computed at each call, as they are for
a module cast to another dtype (`.double()`: then in float64, from its float64 inverse frequencies). The
numbers are the same either way.
"""
from __future__ import annotations

import torch
import torch.nn as nn


# The tables of one module take max_len x dim x 4 bytes (cos and sin, dim / 2 float32 columns each), in every
# layer: built only up to this size (32K positions at dim 128; 24 FLASH layers at 32K: 0.4 GB of ~50 GiB)
TABLE_MAX_BYTES = 16 * 2**20


class RotaryEmbedding(nn.Module):
    def __init__(self, dim: int, base: float = 10000.0, max_len: int | None = None):
        super().__init__()
        if dim % 2:
            raise ValueError(f"RoPE needs an even dimension, got {dim}")
        inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        self.dim = dim
        self.max_len = max_len if max_len and max_len * dim * 4 <= TABLE_MAX_BYTES else 0  # positions tabled
        if self.max_len:
            angles = self.half_angles(self.max_len, self.inv_freq.device)
            self.register_buffer("cos_table", angles.cos(), persistent=False)
            self.register_buffer("sin_table", angles.sin(), persistent=False)

    def half_angles(self, T: int, device: torch.device) -> torch.Tensor:
        """pos * inv_freq, float32 [T, dim / 2]."""
        return torch.outer(torch.arange(T, device=device, dtype=torch.float32), self.inv_freq.to(device))

    def cos_sin(self, T: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [T, dim] of the positions 0 .. T - 1, in `dtype`: from the tables when T <= max_len and they
        are still float32 (a module made float64 by `.double()` computes them at the call, in float64)."""
        if T <= self.max_len and self.cos_table.dtype == torch.float32:
            cos, sin = self.cos_table[:T], self.sin_table[:T]
        else:
            angles = self.half_angles(T, device)
            cos, sin = angles.cos(), angles.sin()
        return torch.cat([cos, cos], dim=-1).to(dtype), torch.cat([sin, sin], dim=-1).to(dtype)

    def forward(self, *xs: torch.Tensor, seq_dim: int = -2) -> tuple[torch.Tensor, ...]:
        """Rotate each x of shape [..., T, dim] (T at `seq_dim`) by its position."""
        T = xs[0].shape[seq_dim]
        cos, sin = self.cos_sin(T, xs[0].device, xs[0].dtype)
        if seq_dim != -2:
            shape = [1] * xs[0].dim()
            shape[seq_dim], shape[-1] = T, self.dim
            cos, sin = cos.view(shape), sin.view(shape)
        return tuple(x * cos + rotate_half(x) * sin for x in xs)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)
