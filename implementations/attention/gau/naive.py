"""The plain dense reference for mixed chunk attention: the full T x T attention matrix.

Slow and memory-hungry on purpose: every (query i, key j) pair is computed from the equations of
chunk.py's docstring without chunking, padding or prefix sums, so that `mixed_chunk_attention` and
`GAU.reference_forward` can be tested against it (tests/test_gau.py, the benchmark's correctness gate).
FLASH-Quad's `quadratic_attention` (quad.py) builds the T x T matrix already and is its own reference.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .chunk import global_normaliser


def dense_mixed_chunk_matrix(q_quad: torch.Tensor, k_quad: torch.Tensor, q_lin: torch.Tensor,
                             k_lin: torch.Tensor, bias_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                             chunk: int, causal: bool, parts: str = "mixed",
                             global_norm: str = "tokens") -> torch.Tensor:
    """The effective attention matrix A [B, T, T] of mixed chunk attention: its output is A v.

    bias_fn(i, j) -> relative bias b_rel inside a chunk, for index tensors i, j of in-chunk positions.
    """
    B, T, _ = q_quad.shape
    i = torch.arange(T, device=q_quad.device)[:, None]  # query positions
    j = torch.arange(T, device=q_quad.device)[None, :]  # key positions
    gi, gj = i // chunk, j // chunk  # their chunks
    local = F.relu(q_quad @ k_quad.transpose(-1, -2) / chunk + bias_fn(i % chunk, j % chunk)).square()
    same = gi == gj
    if causal:
        same = same & (j <= i)
    lin = q_lin @ k_lin.transpose(-1, -2)
    G = -(-T // chunk)
    norm = global_normaliser(global_norm, causal, chunk, T, G, lin.device, lin.dtype)
    if causal:
        lin = torch.where(gj < gi, lin / norm[gi], torch.zeros_like(lin))
    else:
        lin = lin / norm
    local = torch.where(same, local, torch.zeros_like(local))
    return {"mixed": local + lin, "local": local, "global": lin}[parts]
