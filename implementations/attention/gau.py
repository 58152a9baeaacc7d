"""Gated attention unit (GAU) and mixed chunk attention (Hua et al., 2022, sections 2 and 3).

GAU, for a normalised input X[T, d]:
    U, V, Z = split(silu(X W_in + b))            U, V: [T, e];  Z: [T, s]
    Q, K    = Z * gamma_q + beta_q, Z * gamma_k + beta_k
    A       = relu(Q K^T / n + b_rel)^2           (causal: lower triangle only)
    O       = (U * (A V)) W_o

Mixed chunk attention (FLASH) splits T into chunks of C tokens and replaces A V with
    V_quad_g = relu(Q_quad_g K_quad_g^T / C + b_rel)^2 V_g              inside chunk g
    V_lin_g  = Q_lin_g (sum_{h<g} K_lin_h^T V_h) / ((g) C)              causal: earlier chunks only
    V_lin_g  = Q_lin_g (sum_h K_lin_h^T V_h) / T                        bidirectional
Both forms here take tensors [B, T, .]; `dense_*` functions build the full T x T matrix and are
the plain references that the chunked form is tested against.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers.linear import Linear
from ..layers.rope import RotaryEmbedding

QUAD_NORMS = ("max_len", "length")


class ScaleOffset(nn.Module):
    """h cheap per-dimension transforms of one shared Z: Z * gamma_i + beta_i.

    Returns one tensor [h, ..., s] (heads first, so each head is contiguous for the matmuls).
    """

    def __init__(self, s: int, heads: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.randn(heads, s) * 0.02)
        self.beta = nn.Parameter(torch.zeros(heads, s))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        shape = (self.gamma.shape[0],) + (1,) * (z.dim() - 1) + (self.gamma.shape[1],)
        return torch.addcmul(self.beta.view(shape), z.unsqueeze(0), self.gamma.view(shape))


class RelativePositionBias(nn.Module):
    """A learned scalar per relative offset j - i in [-(n-1), n-1] (a Toeplitz bias)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.weight = nn.Parameter(torch.zeros(2 * n - 1))

    def forward(self, T: int) -> torch.Tensor:
        if T > self.n:
            raise ValueError(f"relative position bias covers {self.n} positions, asked for {T}")
        idx = torch.arange(T, device=self.weight.device)
        return self.weight[(idx[None, :] - idx[:, None]) + self.n - 1]  # [T, T]


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


def quadratic_attention(q, k, v, bias, norm: float, causal: bool) -> torch.Tensor:
    """FLASH-Quad's attention A V over the whole sequence. q, k: [B, T, s]; v: [B, T, e]."""
    return torch.matmul(relu2_scores(q, k, bias, norm, causal), v)


PARTS = ("mixed", "local", "global")  # the paper's ablation: both parts, local (quadratic) only, global (linear) only
PREFIXES = ("auto", "cumsum", "matmul")  # ways to sum the chunk states of earlier chunks (same numbers)
# "auto" takes the triangular GEMM from this many chunks on, the cumsum below it. Compiled, one layer
# forward + backward at d 768 on an H200 (results/NOTES.md, entry 11): the GEMM is 0.24-0.33 ms faster
# from 8 chunks on (2K at chunk 256), 0.22 ms slower at 4 and 0.70 ms slower at 2, where it degenerates.
PREFIX_MATMUL_MIN_CHUNKS = 8


def exclusive_chunk_prefix(kv: torch.Tensor, how: str = "auto") -> torch.Tensor:
    """sum_{h<g} kv[:, h] for every chunk g; kv: [B, G, s, e].

    "cumsum": a float32 cumulative sum over the chunk axis minus each chunk's own state (returned in
    float32). "matmul": a strictly lower-triangular [G, G] matrix of ones times the states, one GEMM in
    kv's dtype with float32 accumulation inside it (returned in kv's dtype): no float32 copy of the
    states and no scan over an outer axis (whose backward Inductor lowers to flip-cumsum-flip).
    "auto": matmul from PREFIX_MATMUL_MIN_CHUNKS chunks on, cumsum below. All are tested against the
    dense reference.
    """
    if how == "auto":
        how = "matmul" if kv.shape[1] >= PREFIX_MATMUL_MIN_CHUNKS else "cumsum"
    if how == "cumsum":
        acc = kv.to(torch.promote_types(kv.dtype, torch.float32))
        return acc.cumsum(dim=1) - acc
    if how == "matmul":
        B, G = kv.shape[:2]
        tri = torch.ones(G, G, device=kv.device, dtype=kv.dtype).tril(-1)
        return torch.matmul(tri, kv.reshape(B, G, -1)).view_as(kv)
    raise ValueError(f"unknown chunk prefix {how!r}; valid: {', '.join(PREFIXES)}")


def mixed_chunk_attention(q_quad, k_quad, q_lin, k_lin, v, bias: torch.Tensor | None, chunk: int,
                          causal: bool, parts: str = "mixed", prefix: str = "auto") -> torch.Tensor:
    """Chunked form of mixed chunk attention. q_*, k_*: [B, T, s]; v: [B, T, e]; bias: [C, C].
    `prefix`: how the causal form sums earlier chunks' states (`exclusive_chunk_prefix`).

    Any T: the sequence is padded with zeros to a multiple of `chunk`; padded keys carry V = 0 and
    K_lin = 0, so they add nothing, and their outputs are dropped.
    """
    B, T, _ = v.shape
    C = min(chunk, T)  # a sequence shorter than one chunk is one chunk of T tokens (no padding) ...
    G = -(-T // C)
    pad = G * C - T
    if pad:
        q_quad, k_quad, q_lin, k_lin, v = (F.pad(t, (0, 0, 0, pad)) for t in (q_quad, k_quad, q_lin, k_lin, v))
    qq, kq, ql, kl, vv = (t.reshape(B, G, C, t.shape[-1]) for t in (q_quad, k_quad, q_lin, k_lin, v))
    if bias is not None:
        bias = bias[:C, :C]
    local = quadratic_attention(qq, kq, vv, bias, float(chunk), causal)  # ... still normalised by 1/chunk
    if parts == "local":
        return local.reshape(B, G * C, -1)[:, :T]
    kv = torch.matmul(kl.transpose(-1, -2), vv)  # [B, G, s, e]: each chunk's state
    acc = torch.promote_types(kv.dtype, torch.float32)  # sums over chunks in at least float32
    if causal:
        # exclusive prefix sum over chunks, normalised by the number of tokens summed (g C); the
        # normaliser goes on the query, [.., C, s], not the state, [.., s, e]
        kv = exclusive_chunk_prefix(kv, prefix).to(ql.dtype)
        counts = torch.arange(G, device=v.device, dtype=acc).clamp_min(1) * C
        ql = ql * (1.0 / counts).view(1, G, 1, 1).to(ql.dtype)
        rows = (B * G, C)  # each chunk reads its own state
    else:
        kv = (kv.to(acc).sum(dim=1) / T).to(ql.dtype)  # [B, s, e]: one state for the whole sequence
        rows = (B, G * C)
    lhs, state = ql.reshape(*rows, ql.shape[-1]), kv.reshape(rows[0], *kv.shape[-2:])
    if parts == "global":
        out = torch.bmm(lhs, state)
    else:  # local + Q_lin S in one GEMM (the addition in its epilogue, not a separate pass over [T, e])
        out = torch.baddbmm(local.reshape(*rows, local.shape[-1]), lhs, state)
    return out.reshape(B, G * C, -1)[:, :T]


def dense_mixed_chunk_matrix(q_quad, k_quad, q_lin, k_lin, bias_fn, chunk: int, causal: bool,
                             parts: str = "mixed") -> torch.Tensor:
    """The reference: the full effective T x T attention matrix of mixed chunk attention.

    bias_fn(i, j) -> relative bias inside a chunk, for index tensors i, j.
    """
    B, T, _ = q_quad.shape
    i = torch.arange(T, device=q_quad.device)[:, None]
    j = torch.arange(T, device=q_quad.device)[None, :]
    gi, gj = i // chunk, j // chunk
    local = F.relu(q_quad @ k_quad.transpose(-1, -2) / chunk + bias_fn(i % chunk, j % chunk)).square()
    same = gi == gj
    if causal:
        same = same & (j <= i)
    lin = q_lin @ k_lin.transpose(-1, -2)
    if causal:
        earlier = gj < gi
        n_summed = (gi * chunk).clamp_min(1).to(lin.dtype)
        lin = torch.where(earlier, lin / n_summed, torch.zeros_like(lin))
    else:
        lin = lin / T
    local = torch.where(same, local, torch.zeros_like(local))
    return {"mixed": local + lin, "local": local, "global": lin}[parts]


class GAU(nn.Module):
    """One gated attention unit (without its residual and norm). attention: 'quad' or 'mixed_chunk'."""

    def __init__(self, d: int, *, expansion: int, s: int, causal: bool, max_len: int, attention: str,
                 chunk: int = 256, quad_norm: str = "max_len", rope: bool = True, rel_pos_bias: bool = True,
                 parts: str = "mixed"):
        super().__init__()
        if parts not in PARTS:
            raise ValueError(f"unknown mixed chunk attention parts {parts!r}; valid: {', '.join(PARTS)}")
        self.parts = parts
        if attention not in ("quad", "mixed_chunk"):
            raise ValueError(f"unknown GAU attention {attention!r}; valid: quad, mixed_chunk")
        if quad_norm not in QUAD_NORMS:
            raise ValueError(f"unknown quad_norm {quad_norm!r}; valid: {', '.join(QUAD_NORMS)}")
        if chunk < 1:
            raise ValueError(f"chunk size must be >= 1, got {chunk}")
        self.e, self.s = expansion * d, s
        # nn.Linear with bias gradients by a matmul (layers/linear.py: faster compiled, same numbers)
        self.to_hidden = Linear(d, 2 * self.e + s)
        self.to_out = Linear(self.e, d)
        self.scale_offset = ScaleOffset(s, 2 if attention == "quad" else 4)
        self.rope = RotaryEmbedding(s) if rope else None
        n_bias = max_len if attention == "quad" else chunk
        self.rel_pos_bias = RelativePositionBias(n_bias) if rel_pos_bias else None
        self.attention, self.chunk, self.causal = attention, chunk, causal
        self.quad_norm, self.max_len = quad_norm, max_len

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_out(self.gated_attention(x))

    def qkv(self, x: torch.Tensor):
        u, v, z = F.silu(self.to_hidden(x)).split([self.e, self.e, self.s], dim=-1)
        qk = self.scale_offset(z)  # [heads, B, T, s]
        if self.rope is not None:
            qk = self.rope(qk)[0]  # one pass over all heads
        return u, v, qk.unbind(0)

    def quad_bias_and_norm(self, T: int) -> tuple[torch.Tensor | None, float]:
        """FLASH-Quad's relative bias [T, T] and score normaliser (max_len, or the paper's T)."""
        bias = self.rel_pos_bias(T) if self.rel_pos_bias is not None else None
        return bias, float(self.max_len if self.quad_norm == "max_len" else T)

    def gated_attention(self, x: torch.Tensor) -> torch.Tensor:
        u, v, qk = self.qkv(x)
        if self.attention == "quad":
            out = quadratic_attention(*qk, v, *self.quad_bias_and_norm(x.shape[1]), self.causal)
        else:
            bias = self.rel_pos_bias(self.chunk) if self.rel_pos_bias is not None else None
            out = mixed_chunk_attention(*qk, v, bias, self.chunk, self.causal, self.parts)
        return u * out

    def effective_attention(self, x: torch.Tensor) -> torch.Tensor:
        """The dense T x T attention matrix this layer applies to V (the test reference)."""
        _, _, qk = self.qkv(x)
        if self.attention == "quad":
            return relu2_scores(*qk, *self.quad_bias_and_norm(x.shape[1]), self.causal)
        w = self.rel_pos_bias.weight if self.rel_pos_bias is not None else None

        def bias_fn(i, j):
            return w[j - i + self.chunk - 1] if w is not None else torch.zeros((), dtype=x.dtype, device=x.device)

        return dense_mixed_chunk_matrix(*qk, bias_fn, self.chunk, self.causal, self.parts)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v, _ = self.qkv(x)
        return self.to_out(u * (self.effective_attention(x) @ v))
