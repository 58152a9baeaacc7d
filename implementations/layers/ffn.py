"""Feed-forward layers: the Transformer's two-layer MLP and the GLU variant (Shazeer, 2020)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class FeedForward(nn.Module):
    """act(x W1) W2, hidden = 4d: 8 d^2 parameters."""

    def __init__(self, d: int, hidden: int, act: str = "gelu"):
        super().__init__()
        self.w1, self.w2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.act(self.w1(x)))


class GLUFeedForward(nn.Module):
    """(act(x W_gate) * x W_up) W_down; hidden = 8d/3 keeps the 8 d^2 parameters of FeedForward."""

    def __init__(self, d: int, hidden: int, act: str = "silu"):
        super().__init__()
        self.w_in = nn.Linear(d, 2 * hidden, bias=False)
        self.w_out = nn.Linear(hidden, d, bias=False)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w_in(x).chunk(2, dim=-1)
        return self.w_out(self.act(gate) * up)


def glu_hidden(d: int, multiple: int = 64) -> int:
    """8d/3 rounded up to a multiple (tensor-core friendly): 2048 at d=768."""
    h = (8 * d + 2) // 3
    return max(multiple, -(-h // multiple) * multiple) if d >= multiple else h
