"""FLASH's mixed chunk attention, chunked: linear in T (Hua et al., 2022, section 3).

The sequence is split into G chunks of C tokens (C the `chunk` option); chunk g holds tokens
gC .. gC + C - 1. With the GAU's four transforms of z (layer.py, MixedChunkQK) and its values v, the
attention A v is replaced by

    local_g  = relu(q_quad_g k_quad_g^T / C + b_rel)^2 v_g           inside chunk g (causal: lower triangle)
    state_h  = k_lin_h^T v_h                                         [s, e]: chunk h's state
    global_g = q_lin_g (sum_{h<g} state_h) / n_g                     causal: earlier chunks only
    global_g = q_lin_g (sum_h state_h) / n                           bidirectional
    out_g    = local_g + global_g                                    ("mixed"; "local" or "global" alone)

n is the global normaliser (`global_normaliser`, the `global_norm` option): by default the number of
tokens summed, gC causal and T bidirectional. The causal sum over earlier chunks is the exclusive
chunk prefix (`exclusive_chunk_prefix`, the `chunk_prefix` option). Tensors are [B, T, .]; naive.py
holds the dense T x T reference this op is tested against.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .quad import quadratic_attention, relu2_scores


def check_choice(what: str, value: str, valid: tuple[str, ...]) -> None:
    """Refuse a value outside `valid`, naming what it is for and the valid values."""
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")

PARTS = ("mixed", "local", "global")  # the paper's ablation: both parts, local (quadratic) only, global (linear) only
GLOBAL_NORMS = ("tokens", "chunk", "none")
CHUNK_PREFIXES = ("auto", "cumsum", "matmul")  # ways to sum the states of earlier chunks (same numbers)
# "auto" takes the triangular GEMM from this many chunks on, the cumsum below it. Compiled, one layer
# forward + backward at d 768 on an H200 (results/NOTES.md, entry 11): the GEMM is 0.24-0.33 ms faster
# from 8 chunks on (2K at chunk 256), 0.22 ms slower at 4 and 0.70 ms slower at 2, where it degenerates.
PREFIX_MATMUL_MIN_CHUNKS = 8
STATE_SUM_DTYPE = torch.float32  # sums of chunk states over chunks run in at least this precision
# "mixed" adds its local and global parts inside one GEMM per chunk, out_g = [P_g, q_lin_g] [v_g; state_g] over
# K = C + s: no local tensor is written and read back, and the backward reads dout twice (one GEMM returns
# [dP, dq_lin], one [dv_local; d state]). The other way, local = P v and then out = local + q_lin state in a
# baddbmm's epilogue, was 2.4-2.5 ms (3.6%) slower per compiled FLASH step at causal 2K / 8K and 0.5 ms at masked
# 2K on an H100 at the quality size (results/nvidia-h100/global-form, NOTES entry 30); the two differ by one bf16
# rounding of the local part.


def exclusive_chunk_prefix(kv: torch.Tensor, how: str = "auto") -> torch.Tensor:
    """sum_{h<g} kv[:, h] for every chunk g; kv: [B, G, s, e]. `how` is one of CHUNK_PREFIXES.

    "cumsum": a float32 cumulative sum over the chunk axis minus each chunk's own state (returned in
    float32). "matmul": a strictly lower-triangular [G, G] matrix of ones times the states, one GEMM in
    kv's dtype with float32 accumulation inside it (returned in kv's dtype): no float32 copy of the
    states and no scan over an outer axis (whose backward Inductor lowers to flip-cumsum-flip).
    "auto": matmul from PREFIX_MATMUL_MIN_CHUNKS chunks on, cumsum below. All are tested against the
    dense reference.
    """
    check_choice("chunk prefix", how, CHUNK_PREFIXES)
    if how == "auto":
        how = "matmul" if kv.shape[1] >= PREFIX_MATMUL_MIN_CHUNKS else "cumsum"
    if how == "cumsum":
        acc = kv.to(torch.promote_types(kv.dtype, STATE_SUM_DTYPE))
        return acc.cumsum(dim=1) - acc
    B, G = kv.shape[:2]  # "matmul"
    earlier = torch.ones(G, G, device=kv.device, dtype=kv.dtype).tril(-1)  # earlier[g, h] = 1 for h < g
    return torch.matmul(earlier, kv.reshape(B, G, -1)).view_as(kv)


def global_normaliser(global_norm: str, causal: bool, chunk: int, T: int, G: int, device, dtype) -> torch.Tensor:
    """What the global (linear) part is divided by: per chunk g = 0..G-1 when causal ([G]), else a scalar.

    "tokens": the number of tokens summed, g C (causal; at least 1, chunk 0 sums nothing) or T
              (bidirectional);
    "chunk":  C when causal, T bidirectional (the normaliser of the public FLASH-pytorch code);
    "none":   1 (the paper's pseudo-code as copied publicly has no normaliser).
    """
    check_choice("global_norm", global_norm, GLOBAL_NORMS)
    if global_norm == "none":
        n = torch.ones(G if causal else 1, device=device, dtype=dtype)
    elif not causal:
        n = torch.full((1,), float(T), device=device, dtype=dtype)
    elif global_norm == "chunk":
        n = torch.full((G,), float(chunk), device=device, dtype=dtype)
    else:
        n = torch.arange(G, device=device, dtype=dtype).clamp_min(1) * chunk
    return n if causal else n[0]


def mixed_chunk_attention(q_quad: torch.Tensor, k_quad: torch.Tensor, q_lin: torch.Tensor, k_lin: torch.Tensor,
                          v: torch.Tensor, bias: torch.Tensor | None, chunk: int, causal: bool,
                          parts: str = "mixed", chunk_prefix: str = "auto",
                          global_norm: str = "tokens") -> torch.Tensor:
    """Chunked mixed chunk attention (the module docstring's equations). q_*, k_*: [B, T, s];
    v: [B, T, e]; bias: the relative bias b_rel inside a chunk, [C, C] or larger, or None.
    `parts`: one of PARTS; `chunk_prefix`: how the causal form sums earlier chunks' states, one of
    CHUNK_PREFIXES (`exclusive_chunk_prefix`); `global_norm`: what the global part is divided by, one of
    GLOBAL_NORMS (`global_normaliser`).

    Any T: the sequence is padded with zeros to a multiple of `chunk`; padded keys carry v = 0 and
    k_lin = 0, so they add nothing, and their outputs are dropped.
    """
    check_choice("mixed chunk attention parts", parts, PARTS)
    check_choice("chunk_prefix", chunk_prefix, CHUNK_PREFIXES)
    B, T, _ = v.shape
    C = min(chunk, T)  # a sequence shorter than one chunk is one chunk of T tokens (no padding) ...
    G = -(-T // C)
    pad = G * C - T
    if pad:
        q_quad, k_quad, q_lin, k_lin, v = (F.pad(t, (0, 0, 0, pad)) for t in (q_quad, k_quad, q_lin, k_lin, v))
    # [B, G, C, .]: chunk g of each
    qq, kq, ql, kl, vv = (t.reshape(B, G, C, t.shape[-1]) for t in (q_quad, k_quad, q_lin, k_lin, v))
    if bias is not None:
        bias = bias[:C, :C]
    if parts == "local":
        return quadratic_attention(qq, kq, vv, bias, float(chunk), causal).reshape(B, G * C, -1)[:, :T]
    state = torch.matmul(kl.transpose(-1, -2), vv)  # [B, G, s, e]: each chunk's state k_lin_h^T v_h
    acc = torch.promote_types(state.dtype, STATE_SUM_DTYPE)
    if causal:
        # exclusive prefix sum over chunks; the normaliser goes on the query, [.., C, s], not the state, [.., s, e]
        state = exclusive_chunk_prefix(state, chunk_prefix).to(ql.dtype)
        n = global_normaliser(global_norm, True, C, T, G, v.device, acc)
        if global_norm != "none":
            ql = ql * (1.0 / n).view(1, G, 1, 1).to(ql.dtype)
        rows = (B * G, C)  # each chunk reads its own state
    else:
        n = global_normaliser(global_norm, False, C, T, G, v.device, acc)
        state = (state.to(acc).sum(dim=1) / n).to(ql.dtype)  # [B, s, e]: one state for the whole sequence
        rows = (B, G * C)
    if parts == "global":
        lhs, state = ql.reshape(*rows, ql.shape[-1]), state.reshape(rows[0], *state.shape[-2:])
        return torch.bmm(lhs, state).reshape(B, G * C, -1)[:, :T]
    if not causal:  # every chunk's copy of the one state, for the per-chunk GEMM
        state = state[:, None].expand(B, G, *state.shape[-2:])
    probs = relu2_scores(qq, kq, bias, float(chunk), causal)  # [B, G, C, C], still normalised by 1/chunk
    lhs = torch.cat([probs.to(ql.dtype), ql], dim=-1)  # [B, G, C, C + s]
    rhs = torch.cat([vv, state.to(vv.dtype)], dim=-2)  # [B, G, C + s, e]
    return torch.matmul(lhs, rhs).reshape(B, G * C, -1)[:, :T]
