"""Combiner (Ren et al., NeurIPS 2021): Transformer++ with softmax attention replaced by Combiner attention.

Combiner reads attention as a conditional expectation, A(x_i) = sum_j p(j | i) v_j, and factorises
p(j | i) so that every query reaches every key of its support at sub-quadratic cost:

    p(j | i) = p(j | i)                      for j in the query's direct support Omega_i^0
    p(j | i) = p(Omega_r | i) p(j | Omega_r)  for j in another region Omega_r ("abstraction")

where one softmax over "direct keys + one abstraction key per region" gives p(j | i) and p(Omega_r | i),
and p(j | Omega_r) is a query-independent distribution inside the region. Its output is then
    A(x_i) = sum_{j in Omega_i^0} p(j | i) v_j + sum_r p(Omega_r | i) vbar_r,  vbar_r = sum_{j in Omega_r} p(j | Omega_r) v_j.

Ours is the axial, row-major form ("sqrt decomposition"): the sequence is a grid of rows of `block`
(C) tokens, G = ceil(T / C) rows.
  direct support   the query's own row (causal: positions <= i of that row)
  regions          every other row (causal: only whole earlier rows; the query's own row is never
                   summarised, so nothing from the future leaks)
  abstraction key  kbar_r = mean of the row's (rotated) keys, so q_i . kbar_r is the mean of the
                   direct logits q_i . k_j over the row
  p(j | Omega_r)   softmax_j(qbar_r . k_j / sqrt(D)) over the row, qbar_r = mean of the row's queries
Both are parameter-free, so the model has exactly Transformer++'s parameters.
Cost per token: C direct keys + G abstraction keys (plus 4 D per token for the row summaries); memory
O(T (C + G)) per head, which is O(T C) because the default C >= sqrt(max_len) >= G.
T not a multiple of C: zero-pad to a multiple; padded keys are masked out of direct attention, of the
row means and of p(j | Omega_r); padded outputs are dropped. T <= C: one row, exact softmax attention.

`combiner_attention` is the vectorised form (no loop over rows); `combiner_dense_probabilities` builds
the full T x T matrix implied by the factorisation, written independently, as its test reference.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attention.heads import HeadAttention
from ..config import ModelConfig
from ..flops import attention_pair
from ..layers.norm import NORMS
from ..registry import FidelityNote, ModelSpec, register_model
from .transformer import COMMON_NOTES, build_transformer, n_heads, transformer_flops

OPTIONS = {"n_heads": None, "block": None, "norm": "layernorm", "tie_embeddings": True}
MIN_BLOCK = 64


def default_block(max_len: int) -> int:
    """The smallest power of two >= sqrt(max_len), at least 64: 64 up to 4K, 128 at 8K/16K, 256 at 32K/64K.

    Fixed per model (not per input length), so a causal model's output at position i does not depend
    on how many tokens follow; and G = T / C <= C for every T <= max_len.
    """
    return max(MIN_BLOCK, 1 << math.ceil(math.log2(math.sqrt(max_len))))


def resolve_block(cfg: ModelConfig) -> int:
    block = cfg["block"]
    if block is None:
        return default_block(cfg.max_len)
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"combiner block must be a positive int or None, got {block!r}")
    return block


def combiner_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
                       block: int) -> torch.Tensor:
    """Axial (row-major) Combiner attention. q, k, v: [B, H, T, D] (RoPE already applied) -> [B, H, T, D]."""
    B, H, T, D = q.shape
    C = min(block, T)  # T <= block: a single row (the same function, no padding work)
    G = -(-T // C)
    pad = G * C - T
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    q, k, v = (t.reshape(B, H, G, C, D) for t in (q, k, v))
    scale = 1.0 / math.sqrt(D)
    dev = q.device

    acc = torch.promote_types(q.dtype, torch.float32)  # softmax and means in >= float32
    valid = (torch.arange(G * C, device=dev) < T).view(G, C)  # real (not padded) positions
    # --- row summaries: abstraction key, p(j | row) and the value summary ---
    n_valid = valid.sum(-1).to(acc).view(1, 1, G, 1)
    k_bar = k.to(acc).sum(-2) / n_valid  # [B, H, G, D]; padded keys and queries are zeros
    q_bar = q.to(acc).sum(-2) / n_valid
    row_logits = torch.einsum("bhgd,bhgcd->bhgc", q_bar.to(k.dtype), k).to(acc) * scale
    row_logits = row_logits.masked_fill(~valid, float("-inf"))
    p_in_row = row_logits.softmax(dim=-1)  # [B, H, G, C]
    v_bar = torch.einsum("bhgc,bhgcd->bhgd", p_in_row.to(v.dtype), v)  # [B, H, G, D]

    # --- one softmax over direct keys (own row) and abstraction keys (other rows) ---
    local = torch.einsum("bhgcd,bhged->bhgce", q, k).to(acc) * scale  # [B, H, G, C, C]
    local_mask = valid.view(1, G, 1, C).expand(1, G, C, C)  # key must be real
    if causal:
        local_mask = local_mask & torch.ones(C, C, dtype=torch.bool, device=dev).tril()
    local = local.masked_fill(~local_mask, float("-inf"))
    glob = torch.einsum("bhgcd,bhrd->bhgcr", q, k_bar.to(q.dtype)).to(acc) * scale  # [B, H, G, C, G]
    g_idx = torch.arange(G, device=dev)
    region_mask = (g_idx[None, :] < g_idx[:, None]) if causal else (g_idx[None, :] != g_idx[:, None])
    glob = glob.masked_fill(~region_mask.view(G, 1, G), float("-inf"))
    probs = torch.cat([local, glob], dim=-1).softmax(dim=-1)  # every query has >= 1 direct key
    p_local, p_glob = probs.to(v.dtype).split([C, G], dim=-1)
    out = torch.einsum("bhgce,bhged->bhgcd", p_local, v) + torch.einsum("bhgcr,bhrd->bhgcd", p_glob, v_bar)
    return out.reshape(B, H, G * C, D)[:, :, :T]


def combiner_dense_probabilities(q: torch.Tensor, k: torch.Tensor, *, causal: bool, block: int) -> torch.Tensor:
    """The reference: the full T x T matrix P of Combiner's factorised p(j | i); output = P @ V.

    Written from the definition, without padding: row r holds positions r*C .. min((r+1)*C, T) - 1.
      direct (same row; causal: j <= i):   P_ij = exp(s_ij) / Z_i
      other row r (causal: r < row(i)):     P_ij = exp(sbar_ir) / Z_i * p(j | r)
    with s_ij = q_i . k_j / sqrt(D), sbar_ir = mean_{j in r} s_ij (= q_i . mean k), p(j | r) the softmax
    of mean_{l in r} q_l . k_j / sqrt(D) over j in r, and Z_i the sum of the direct and abstract terms.
    """
    *_, T, D = q.shape
    C = min(block, T)
    pos = torch.arange(T, device=q.device)
    row = pos // C
    same = row[:, None] == row[None, :]  # [T(i), T(j)]
    direct = same & (pos[None, :] <= pos[:, None]) if causal else same
    G = int(row[-1]) + 1
    member = (row[None, :] == torch.arange(G, device=q.device)[:, None]).to(q.dtype)  # [G, T]
    size = member.sum(-1)  # [G]
    s = q @ k.transpose(-1, -2) / math.sqrt(D)  # [..., T, T]
    s_bar = (s @ member.transpose(0, 1)) / size  # [..., T, G]
    reach = (torch.arange(G, device=q.device)[None, :] < row[:, None]) if causal else \
        (torch.arange(G, device=q.device)[None, :] != row[:, None])  # [T, G]
    s_all = torch.cat([s.masked_fill(~direct, float("-inf")), s_bar.masked_fill(~reach, float("-inf"))], dim=-1)
    p_all = s_all.softmax(dim=-1)
    p_direct, p_region = p_all[..., :T], p_all[..., T:]
    q_bar = (member @ q) / size[:, None]  # [..., G, D]
    r_logits = (q_bar @ k.transpose(-1, -2)) / math.sqrt(D)  # [..., G, T]
    p_in_region = r_logits.masked_fill(member == 0, float("-inf")).softmax(dim=-1)  # [..., G, T]
    return p_direct + p_region @ p_in_region  # abstraction mass spread over its row


class CombinerAttention(HeadAttention):
    """Multi-head Combiner attention with MultiHeadAttention's projections (and RoPE on q, k)."""

    def __init__(self, d: int, n_heads: int, *, causal: bool, block: int, rope: bool = True,
                 max_len: int | None = None):
        if block < 1:
            raise ValueError(f"combiner block must be >= 1, got {block}")
        super().__init__(d, n_heads, causal=causal, rope=rope, max_len=max_len)
        self.block = block

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return combiner_attention(q, k, v, causal=self.causal, block=self.block)


def build_combiner(cfg: ModelConfig) -> nn.Module:
    block = resolve_block(cfg)
    return build_transformer(cfg, rope=True, glu=True, attention_factory=lambda c: CombinerAttention(
        c.d_model, n_heads(c), causal=c.causal, block=block, rope=True, max_len=c.max_len))


def combiner_attention_flops(cfg: ModelConfig, T: int) -> float:
    """Per-layer, per-token forward FLOPs of Combiner attention (the suite's convention, flops.py).

    direct:       q k^T and p v over the C keys of the row, halved when causal
    abstractions: q kbar^T and p vbar over the G = ceil(T / C) row summaries, halved when causal
    summaries:    qbar_r . k_j and p(j | r) v_j, once per token: 2 d + 2 d (only when G > 1)
    """
    d = cfg.d_model
    C = min(resolve_block(cfg), T)
    G = -(-T // C)
    flops = attention_pair(C, d, d, cfg.causal)
    if G > 1:
        flops += attention_pair(G, d, d, cfg.causal) + 4.0 * d
    return flops


NOTES = tuple(n for n in COMMON_NOTES if n.topic != "attention kernel") + (
    FidelityNote("Combiner variant",
                 "Combiner baseline, variant not stated here (taken to be the 'axial mixture' factorisation; "
                 "Combiner's public code's causal 'axial mixture, unidirectional' also attends directly along "
                 "the query's column and mixes column- and row-summaries of earlier rows)",
                 "the axial row-major factorisation: direct attention within the query's row (causal: its "
                 "prefix), one abstraction per other row (causal: whole earlier rows only)"),
    FidelityNote("block (row) size", "not stated here",
                 "smallest power of two >= sqrt(max_len), at least 64 (128 at max_len 8K); "
                 "fixed per model, not per input length", "block"),
    FidelityNote("abstractions", "pooled region key (max/mean/DeepSets pooling in Combiner's code); region "
                 "value = attention of a pooled query over the region's keys",
                 "parameter-free: mean of the row's rotated keys (abstraction logit = mean of the direct "
                 "logits); p(j | row) = softmax of the row's mean query against its keys"),
    FidelityNote("backbone", "not stated here",
                 "Transformer++ (RoPE, SwiGLU, pre-norm), so only the attention differs; same parameter "
                 "count", "norm, tie_embeddings"),
    FidelityNote("T not a multiple of block", "not stated here",
                 "zero-pad to a multiple; padded keys masked out of direct attention, row means and "
                 "p(j | row); T <= block is exact softmax attention"),
    FidelityNote("attention kernel", "not stated here",
                 "einsum per row block (O(T (C + T/C)) memory, no fused kernel); causal masks are computed, "
                 "not skipped, though FLOPs count the causal half as in the rest of the suite"),
)

register_model(ModelSpec(
    name="combiner",
    description="Combiner: Transformer++ with axial (row-major) Combiner attention: direct within a row, "
                "abstractions of other rows",
    build=build_combiner,
    flops=lambda cfg, T: transformer_flops(cfg, T, glu=True, attention=combiner_attention_flops(cfg, T)),
    options=dict(OPTIONS), choices={"norm": NORMS}, causal=True, bidirectional=True, quadratic=False, fidelity=NOTES,
    family="transformer", order=4, small_overrides={"block": 8},
    label="Combiner", color="#2ca02c", marker="h", tags=("paper",),  # green
))
