"""FLASH-Quad's attention: relu^2 scores over the whole sequence (Hua et al., 2022, section 2).

    A = relu(q k^T / n + b_rel)^2        causal: lower triangle only
    out = A v

The T x T matrix is built in full, so this op is also its own reference. Mixed chunk attention
(`chunk.py`) uses it for the quadratic part inside each chunk.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def relu2_scores(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None, norm: float,
                 causal: bool) -> torch.Tensor:
    """relu(q k^T / norm + bias)^2, lower triangle kept when causal. q, k: [..., n, s]."""
    a = torch.matmul(q, k.transpose(-1, -2)) / norm
    if bias is not None:
        a = a + bias.to(a.dtype)
    a = F.relu(a).square()
    if causal:
        n = a.shape[-1]
        a = a.masked_fill(torch.ones(n, n, dtype=torch.bool, device=a.device).triu(1), 0.0)
    return a


def quadratic_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                        norm: float, causal: bool) -> torch.Tensor:
    """A v with A = relu2_scores(q, k, bias, norm, causal). q, k: [..., T, s]; v: [..., T, e]."""
    return torch.matmul(relu2_scores(q, k, bias, norm, causal), v)
