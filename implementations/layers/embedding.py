"""Token embeddings and learned absolute positions (the vanilla Transformer's position scheme)."""
from __future__ import annotations

import torch
import torch.nn as nn


class TokenEmbedding(nn.Embedding):
    def __init__(self, vocab_size: int, d: int):
        super().__init__(vocab_size, d)
        nn.init.normal_(self.weight, std=0.02)


class LearnedPositions(nn.Module):
    def __init__(self, max_len: int, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(max_len, d) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        if T > self.weight.shape[0]:
            raise ValueError(f"sequence length {T} exceeds max_len {self.weight.shape[0]}")
        return x + self.weight[:T]
