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


# The paper's code draws every weight from N(0, 0.02^2) (its WEIGHT_INITIALIZER) and biases and
# offsets start at zero. The relative-position bias must not start at zero: with gains of std 0.02,
# relu(QK^T / n + 0)^2 is ~1e-12 and so is its gradient, which switches the quadratic attention off at
# the start (a FLASH-Quad's later logits moved by ~1e-10 of their scale when a token changed).
INIT_STD = 0.02
INITS = ("paper", "legacy")  # legacy: this suite's init until 2026-11-29 (nn.Linear default, bias zeros)
GLOBAL_NORMS = ("tokens", "chunk", "none")
REL_POS_FORMS = ("auto", "toeplitz", "rope")
# the paper's code builds the bias as a free Toeplitz vector below this many positions, from two
# RoPE-rotated vectors from it on
ROPE_BIAS_MIN_LEN = 512
ROPE_BIAS_DIM = 128  # the length of the paper's two vectors a and b


class ScaleOffset(nn.Module):
    """h cheap per-dimension transforms of one shared Z: Z * gamma_i + beta_i.

    Returns one tensor [h, ..., s] (heads first, so each head is contiguous for the matmuls).
    """

    no_weight_decay = ("gamma", "beta")  # gains and offsets (suite/train.py's optimiser groups)

    def __init__(self, s: int, heads: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.randn(heads, s) * INIT_STD)
        self.beta = nn.Parameter(torch.zeros(heads, s))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        shape = (self.gamma.shape[0],) + (1,) * (z.dim() - 1) + (self.gamma.shape[1],)
        return torch.addcmul(self.beta.view(shape), z.unsqueeze(0), self.gamma.view(shape))


def resolve_rel_pos_form(form: str, n: int) -> str:
    """'auto' is the paper's rule: a free Toeplitz vector below 512 positions, RoPE vectors from 512 on."""
    if form not in REL_POS_FORMS:
        raise ValueError(f"unknown rel_pos_form {form!r}; valid: {', '.join(REL_POS_FORMS)}")
    if form == "auto":
        return "toeplitz" if n < ROPE_BIAS_MIN_LEN else "rope"
    return form


class RelativePositionBias(nn.Module):
    """A learned bias b[i, j] that depends on the offset j - i only, for up to n positions.

    form "toeplitz": one free scalar per offset in [-(n-1), n-1] (2n - 1 parameters).
    form "rope": b[i, j] = <RoPE_i(a), RoPE_j(b)> for two learned vectors a, b of 128 entries (the
    rotation makes the product depend on j - i alone); any length, 256 parameters.
    Both start from N(0, 0.02^2) as in the paper's code (`init_std` 0 gives the old zero start).
    """

    no_weight_decay = ("weight", "a", "b")

    def __init__(self, n: int, form: str = "toeplitz", init_std: float = INIT_STD):
        super().__init__()
        self.n, self.form = n, resolve_rel_pos_form(form, n)
        if self.form == "toeplitz":
            self.weight = nn.Parameter(torch.randn(2 * n - 1) * init_std)
        else:
            self.a = nn.Parameter(torch.randn(ROPE_BIAS_DIM) * init_std)
            self.b = nn.Parameter(torch.randn(ROPE_BIAS_DIM) * init_std)
            self.rope = RotaryEmbedding(ROPE_BIAS_DIM)

    def forward(self, T: int) -> torch.Tensor:
        if T > self.n:
            raise ValueError(f"relative position bias covers {self.n} positions, asked for {T}")
        if self.form == "rope":
            a, b = self.rope(self.a.expand(T, -1), self.b.expand(T, -1))
            return a @ b.t()  # [T, T]
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


def global_normaliser(global_norm: str, causal: bool, chunk: int, T: int, G: int, device, dtype) -> torch.Tensor:
    """What the global (linear) part is divided by: per chunk g = 0..G-1 when causal ([G]), else a scalar.

    "tokens": the number of tokens summed, g C (causal; at least 1) or T (bidirectional);
    "chunk":  C when causal, T bidirectional (the normaliser of the public FLASH-pytorch code);
    "none":   1 (the paper's pseudo-code as copied publicly has no normaliser).
    """
    if global_norm not in GLOBAL_NORMS:
        raise ValueError(f"unknown global_norm {global_norm!r}; valid: {', '.join(GLOBAL_NORMS)}")
    if global_norm == "none":
        n = torch.ones(G if causal else 1, device=device, dtype=dtype)
    elif not causal:
        n = torch.full((1,), float(T), device=device, dtype=dtype)
    elif global_norm == "chunk":
        n = torch.full((G,), float(chunk), device=device, dtype=dtype)
    else:
        n = torch.arange(G, device=device, dtype=dtype).clamp_min(1) * chunk
    return n if causal else n[0]


def mixed_chunk_attention(q_quad, k_quad, q_lin, k_lin, v, bias: torch.Tensor | None, chunk: int,
                          causal: bool, parts: str = "mixed", prefix: str = "auto",
                          global_norm: str = "tokens") -> torch.Tensor:
    """Chunked form of mixed chunk attention. q_*, k_*: [B, T, s]; v: [B, T, e]; bias: [C, C].
    `prefix`: how the causal form sums earlier chunks' states (`exclusive_chunk_prefix`);
    `global_norm`: what the global part is divided by (`global_normaliser`).

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
        # exclusive prefix sum over chunks; the normaliser goes on the query, [.., C, s], not the state, [.., s, e]
        kv = exclusive_chunk_prefix(kv, prefix).to(ql.dtype)
        counts = global_normaliser(global_norm, True, C, T, G, v.device, acc)
        if global_norm != "none":
            ql = ql * (1.0 / counts).view(1, G, 1, 1).to(ql.dtype)
        rows = (B * G, C)  # each chunk reads its own state
    else:
        norm = global_normaliser(global_norm, False, C, T, G, v.device, acc)
        kv = (kv.to(acc).sum(dim=1) / norm).to(ql.dtype)  # [B, s, e]: one state for the whole sequence
        rows = (B, G * C)
    lhs, state = ql.reshape(*rows, ql.shape[-1]), kv.reshape(rows[0], *kv.shape[-2:])
    if parts == "global":
        out = torch.bmm(lhs, state)
    else:  # local + Q_lin S in one GEMM (the addition in its epilogue, not a separate pass over [T, e])
        out = torch.baddbmm(local.reshape(*rows, local.shape[-1]), lhs, state)
    return out.reshape(B, G * C, -1)[:, :T]


def dense_mixed_chunk_matrix(q_quad, k_quad, q_lin, k_lin, bias_fn, chunk: int, causal: bool,
                             parts: str = "mixed", global_norm: str = "tokens") -> torch.Tensor:
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
    G = -(-T // chunk)
    norm = global_normaliser(global_norm, causal, chunk, T, G, lin.device, lin.dtype)
    if causal:
        lin = torch.where(gj < gi, lin / norm[gi], torch.zeros_like(lin))
    else:
        lin = lin / norm
    local = torch.where(same, local, torch.zeros_like(local))
    return {"mixed": local + lin, "local": local, "global": lin}[parts]


class GAU(nn.Module):
    """One gated attention unit (without its residual and norm). attention: 'quad' or 'mixed_chunk'."""

    def __init__(self, d: int, *, expansion: int, s: int, causal: bool, max_len: int, attention: str,
                 chunk: int = 256, quad_norm: str = "max_len", rope: bool = True, rel_pos_bias: bool = True,
                 rel_pos_form: str = "auto", parts: str = "mixed", global_norm: str = "tokens",
                 init: str = "paper"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown GAU init {init!r}; valid: {', '.join(INITS)}")
        if global_norm not in GLOBAL_NORMS:
            raise ValueError(f"unknown global_norm {global_norm!r}; valid: {', '.join(GLOBAL_NORMS)}")
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
        self.rel_pos_bias = (RelativePositionBias(n_bias, rel_pos_form, INIT_STD if init == "paper" else 0.0)
                             if rel_pos_bias else None)
        self.attention, self.chunk, self.causal = attention, chunk, causal
        self.quad_norm, self.max_len, self.global_norm = quad_norm, max_len, global_norm
        if init == "paper":  # dense weights N(0, 0.02^2), biases zero (nn.Linear's default otherwise)
            for layer in (self.to_hidden, self.to_out):
                nn.init.normal_(layer.weight, std=INIT_STD)
                nn.init.zeros_(layer.bias)

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
            out = mixed_chunk_attention(*qk, v, bias, self.chunk, self.causal, self.parts,
                                        global_norm=self.global_norm)
        return u * out

    def effective_attention(self, x: torch.Tensor) -> torch.Tensor:
        """The dense T x T attention matrix this layer applies to V (the test reference)."""
        _, _, qk = self.qkv(x)
        if self.attention == "quad":
            return relu2_scores(*qk, *self.quad_bias_and_norm(x.shape[1]), self.causal)
        b = self.rel_pos_bias(self.chunk) if self.rel_pos_bias is not None else None

        def bias_fn(i, j):  # in-chunk positions
            return b[i, j] if b is not None else torch.zeros((), dtype=x.dtype, device=x.device)

        return dense_mixed_chunk_matrix(*qk, bias_fn, self.chunk, self.causal, self.parts, self.global_norm)

    def gradient_probe(self) -> dict[str, list[torch.Tensor]]:
        """After a backward pass: the gradients of the parameters that shape the relu^2 attention weights
        (q/k gains and the relative-position bias), which a zero start can switch off; tests/test_models.py
        checks they are not negligible. The global (linear) part is left out: its weights are the plain
        products q_lin k_lin^T, with no nonlinearity that could switch them off."""
        if self.parts == "global":
            return {}
        grads = [self.scale_offset.gamma.grad[:2]]
        if self.rel_pos_bias is not None:
            grads += [p.grad for p in self.rel_pos_bias.parameters()]
        return {"relu^2 attention (q/k gains, relative bias)": grads}

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v, _ = self.qkv(x)
        return self.to_out(u * (self.effective_attention(x) @ v))
