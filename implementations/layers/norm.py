"""Norms: LayerNorm (the default everywhere), ScaleNorm (in the paper's GAU code), RMSNorm."""
from __future__ import annotations

import torch
import torch.nn as nn

NORMS = ("layernorm", "scalenorm", "rmsnorm")


class ScaleNorm(nn.Module):
    """x * g / ||x||, one learned scalar g initialised to sqrt(d) (Nguyen & Salazar, 2019)."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.g = nn.Parameter(torch.tensor(float(d) ** 0.5))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.g / x.norm(dim=-1, keepdim=True).clamp_min(self.eps))


def make_norm(kind: str, d: int) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(d)
    if kind == "scalenorm":
        return ScaleNorm(d)
    if kind == "rmsnorm":
        return nn.RMSNorm(d)
    raise ValueError(f"unknown norm {kind!r}; valid norms: {', '.join(NORMS)}")
