"""Token embeddings and sinusoidal absolute positions (the vanilla Transformer's position scheme)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class TokenEmbedding(nn.Embedding):
    def __init__(self, vocab_size: int, d: int):
        super().__init__(vocab_size, d)
        nn.init.normal_(self.weight, std=0.02)


class SinusoidalPositions(nn.Module):
    """x + PE(pos), PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) (Vaswani et al., 2017).

    Parameter-free, so it costs no parameters at long max_len; scaled by 0.02 to match the
    embedding's initial scale.
    """

    def __init__(self, max_len: int, d: int, scale: float = 0.02):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]
        freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float64) / d)
        pe = torch.zeros(max_len, d, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(pos * freq)
        pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
        self.register_buffer("pe", (pe * scale).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        if T > self.pe.shape[0]:
            raise ValueError(f"sequence length {T} exceeds max_len {self.pe.shape[0]}")
        return x + self.pe[:T].to(x.dtype)
