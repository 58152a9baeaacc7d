"""Rotary position embedding (Su et al., 2021), applied to the last dimension of q and k.

Rotates pairs (x[..., i], x[..., i + d/2]) by angle pos * base^(-2i/d) ("half" layout).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class RotaryEmbedding(nn.Module):
    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"RoPE needs an even dimension, got {dim}")
        inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        self.dim = dim

    def cos_sin(self, T: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(T, device=device, dtype=torch.float32)
        angles = torch.outer(pos, self.inv_freq.to(device))  # [T, dim/2]
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)

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
