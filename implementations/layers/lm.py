"""The language model shell shared by every model: embed, a stack of residual sub-layers, norm, head."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from .embedding import SinusoidalPositions, TokenEmbedding
from .norm import make_norm


class LanguageModel(nn.Module):
    """tokens[B, T] -> logits[B, T, vocab]. The output head shares the token embedding's weights."""

    def __init__(self, vocab_size: int, d: int, layers: Iterable[nn.Module], *, max_len: int,
                 absolute_positions: bool = False, norm: str = "layernorm", tie_embeddings: bool = True):
        super().__init__()
        self.embed = TokenEmbedding(vocab_size, d)
        self.positions = SinusoidalPositions(max_len, d) if absolute_positions else None
        self.layers = nn.ModuleList(layers)
        self.norm = make_norm(norm, d)
        self.head = nn.Linear(d, vocab_size, bias=False)
        if tie_embeddings:
            self.head.weight = self.embed.weight
        self.max_len = max_len

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [batch, length], got shape {tuple(tokens.shape)}")
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_len {self.max_len}")
        x = self.embed(tokens)
        if self.positions is not None:
            x = self.positions(x)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(tokens))
