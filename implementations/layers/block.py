"""The pre-norm residual sub-layer, and the Transformer block made of two of them."""
from __future__ import annotations

import torch
import torch.nn as nn

from .norm import make_norm


class Residual(nn.Module):
    """x + fn(norm(x))."""

    def __init__(self, d: int, fn: nn.Module, norm: str = "layernorm"):
        super().__init__()
        self.norm = make_norm(norm, d)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(self.norm(x))


def transformer_block(d: int, attention: nn.Module, ffn: nn.Module, norm: str = "layernorm") -> list[nn.Module]:
    """One Transformer block = attention sub-layer + feed-forward sub-layer."""
    return [Residual(d, attention, norm), Residual(d, ffn, norm)]
