"""The sequence mixers of the seven models in JAX, with the equations of their PyTorch modules:

    softmax_attention   transformer, transformer_plus, transformer_plus_plus (attention/softmax.py)
    favor_attention     performer (models/performer.py: FAVOR+ features, chunked causal prefix sums)
    combiner_attention  combiner (models/combiner.py: axial row-major factorisation)
    gau                 flash_quad and flash (attention/gau/: GAU, relu^2 quadratic attention, mixed chunk
                        attention)

Softmax-family tensors are [B, T, H, D] (JAX's attention layout; PyTorch's are [B, H, T, D]); the GAU's
are [B, T, .] and, chunked, [B, G, C, .] (G chunks of C tokens), contracted with einsums so that XLA
sees batched matmuls. Scores run in the compute dtype (relu^2 in bf16 under bf16 compute); softmax,
FAVOR+ features and the sums of chunk states in at least float32 (layers.acc_dtype).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .layers import acc_dtype, apply_rope, dense

# the PyTorch module's constants, read from there so that both backends use one value
from ..attention.gau.chunk import PREFIX_MATMUL_MIN_CHUNKS
from ..models.performer import DEN_FLOOR, KEY_EXPONENT_MAX

# jax.nn.dot_product_attention's implementations: "cudnn" (fused flash attention, GPU, 16-bit inputs)
# and "xla" (the scores materialised)
SDPA_IMPLEMENTATIONS = ("cudnn", "xla")


def sdpa_implementation(platform: str, dtype) -> str:
    """The implementation the `sdpa` kernel asks for: cuDNN's fused attention on a GPU in bf16/fp16 (what
    PyTorch's SDPA picks on the H200), XLA's materialised attention elsewhere."""
    return "cudnn" if platform in ("gpu", "cuda") and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) else "xla"


# ----------------------------------------------------------------------------- softmax attention

def materialized_attention(q, k, v, causal: bool):
    """softmax(q k^T / sqrt(D)) v with the T x T matrix in memory, softmax in >= float32. q, k, v: [B, T, H, D]."""
    scores = jnp.einsum("bthd,bshd->bhts", q, k, preferred_element_type=acc_dtype(q.dtype)) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[1]
        scores = jnp.where(np.tril(np.ones((T, T), dtype=bool)), scores, -jnp.inf)
    return jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(scores, axis=-1).astype(v.dtype), v)


def head_projections(p: dict, x, n_heads: int, rope: bool):
    """q, k, v [B, T, H, D] from one qkv projection (no bias), RoPE on q and k (attention/heads.py)."""
    B, T, d = x.shape
    qkv = dense(p["qkv"], x).reshape(B, T, 3, n_heads, d // n_heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if rope:
        q, k = apply_rope(q, -3), apply_rope(k, -3)
    return q, k, v


def softmax_attention(p: dict, x, *, n_heads: int, causal: bool, rope: bool, kernel: str, implementation: str):
    """Multi-head softmax attention. kernel "sdpa" with implementation "cudnn": jax.nn.dot_product_attention's
    fused cuDNN kernel; otherwise the T x T scores written out ("materialized", the paper's 2022 condition;
    also what jax.nn.dot_product_attention's "xla" implementation does, except that it rounds float64
    softmax to float32)."""
    B, T, d = x.shape
    q, k, v = head_projections(p, x, n_heads, rope)
    if kernel == "sdpa" and implementation == "cudnn":
        o = jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation=implementation)
    else:
        o = materialized_attention(q, k, v, causal)
    return dense(p["out"], o.reshape(B, T, d))


# ----------------------------------------------------------------------------- FAVOR+ (performer)

def favor_features(x, w, *, is_query: bool):
    """phi(x) = exp(w.x' - |x'|^2/2 - stabiliser) / sqrt(m), x' = x d^-1/4; x: [..., T, d], w: [m, d].
    Queries: minus the row max (no gradient); keys: exponent capped at KEY_EXPONENT_MAX."""
    d, m = x.shape[-1], w.shape[0]
    x = x * d ** -0.25
    e = x @ w.astype(x.dtype).T - 0.5 * jnp.square(x).sum(-1, keepdims=True)
    if is_query:
        e = e - jax.lax.stop_gradient(e.max(-1, keepdims=True))
    else:
        e = jnp.minimum(e, KEY_EXPONENT_MAX)
    return jnp.exp(e) * m ** -0.5


def _with_ones(v):
    return jnp.concatenate([v, jnp.ones_like(v[..., :1])], axis=-1)


def _normalise(numden):
    return numden[..., :-1] / jnp.maximum(numden[..., -1:], DEN_FLOOR)


def causal_linear_attention(phi_q, phi_k, v, chunk: int):
    """Causal FAVOR+ with chunk-wise prefix sums ([..., T, .] tensors): a masked C x C product inside a
    chunk, the exclusive cumulative sum of the chunk states phi(K_h)^T [V_h, 1] across chunks."""
    *lead, T, m = phi_q.shape
    C = max(1, min(chunk, T))
    G = -(-T // C)
    pad = [(0, 0)] * len(lead) + [(0, G * C - T), (0, 0)]
    vv = jnp.pad(_with_ones(v), pad)
    q, k = jnp.pad(phi_q, pad), jnp.pad(phi_k, pad)
    q, k, vv = (t.reshape(*lead, G, C, t.shape[-1]) for t in (q, k, vv))
    scores = jnp.where(np.tril(np.ones((C, C), dtype=bool)), q @ jnp.swapaxes(k, -1, -2), 0.0)
    local = scores @ vv                                      # [..., G, C, D + 1]
    states = jnp.swapaxes(k, -1, -2) @ vv                    # [..., G, m, D + 1]
    earlier = jnp.cumsum(states, axis=-3) - states           # exclusive prefix over chunks
    out = _normalise(local + q @ earlier)
    return out.reshape(*lead, G * C, -1)[..., :T, :]


def favor_attention(p: dict, x, features, *, n_heads: int, causal: bool, chunk: int):
    """Multi-head FAVOR+ (RoPE on q, k before the features) in >= float32, like the PyTorch layer."""
    B, T, d = x.shape
    q, k, v = head_projections(p, x, n_heads, rope=True)
    acc = acc_dtype(x.dtype)
    q, k, v = (jnp.swapaxes(t, 1, 2).astype(acc) for t in (q, k, v))  # [B, H, T, D]
    phi_q = favor_features(q, features, is_query=True)
    phi_k = favor_features(k, features, is_query=False)
    if causal:
        o = causal_linear_attention(phi_q, phi_k, v, chunk)
    else:
        o = _normalise(phi_q @ (jnp.swapaxes(phi_k, -1, -2) @ _with_ones(v)))
    return dense(p["out"], jnp.swapaxes(o, 1, 2).reshape(B, T, d).astype(x.dtype))


# ----------------------------------------------------------------------------- Combiner

def combiner_core(q, k, v, *, causal: bool, block: int):
    """Axial Combiner attention on [B, H, T, D] (RoPE applied): direct softmax within the query's row of
    `block` tokens (causal: its prefix), one abstraction (mean key, value summarised by the row's mean
    query) per other row (causal: earlier rows). Softmax and means in >= float32."""
    B, H, T, D = q.shape
    C = min(block, T)
    G = -(-T // C)
    pad = [(0, 0), (0, 0), (0, G * C - T), (0, 0)]
    q, k, v = (jnp.pad(t, pad).reshape(B, H, G, C, D) for t in (q, k, v))
    scale = 1.0 / math.sqrt(D)
    acc = acc_dtype(q.dtype)
    valid = (np.arange(G * C) < T).reshape(G, C)
    n_valid = valid.sum(-1).astype(np.float64).reshape(1, 1, G, 1)
    k_bar = k.astype(acc).sum(-2) / n_valid.astype(acc)
    q_bar = q.astype(acc).sum(-2) / n_valid.astype(acc)
    row_logits = jnp.einsum("bhgd,bhgcd->bhgc", q_bar.astype(k.dtype), k).astype(acc) * scale
    p_in_row = jax.nn.softmax(jnp.where(valid, row_logits, -jnp.inf), axis=-1)
    v_bar = jnp.einsum("bhgc,bhgcd->bhgd", p_in_row.astype(v.dtype), v)
    local = jnp.einsum("bhgcd,bhged->bhgce", q, k).astype(acc) * scale
    local_mask = np.broadcast_to(valid.reshape(G, 1, C), (G, C, C))
    if causal:
        local_mask = local_mask & np.tril(np.ones((C, C), dtype=bool))
    local = jnp.where(local_mask, local, -jnp.inf)
    glob = jnp.einsum("bhgcd,bhrd->bhgcr", q, k_bar.astype(q.dtype)).astype(acc) * scale
    g = np.arange(G)
    region = (g[None, :] < g[:, None]) if causal else (g[None, :] != g[:, None])
    glob = jnp.where(region.reshape(G, 1, G), glob, -jnp.inf)
    probs = jax.nn.softmax(jnp.concatenate([local, glob], axis=-1), axis=-1).astype(v.dtype)
    p_local, p_glob = probs[..., :C], probs[..., C:]
    out = jnp.einsum("bhgce,bhged->bhgcd", p_local, v) + jnp.einsum("bhgcr,bhrd->bhgcd", p_glob, v_bar)
    return out.reshape(B, H, G * C, D)[:, :, :T]


def combiner_attention(p: dict, x, *, n_heads: int, causal: bool, block: int):
    B, T, d = x.shape
    q, k, v = (jnp.swapaxes(t, 1, 2) for t in head_projections(p, x, n_heads, rope=True))
    o = combiner_core(q, k, v, causal=causal, block=block)
    return dense(p["out"], jnp.swapaxes(o, 1, 2).reshape(B, T, d))


# ----------------------------------------------------------------------------- GAU (FLASH-Quad, FLASH)

def relative_bias(p: dict, form: str, n: int, T: int):
    """The learned relative bias b[i, j] (depends on j - i), [T, T]: "toeplitz" a free vector of 2n - 1
    offsets; "rope" <RoPE_i(a), RoPE_j(b)> (attention/gau/layer.py, RelativePositionBias)."""
    if T > n:
        raise ValueError(f"relative position bias covers {n} positions, asked for {T}")
    if form == "rope":
        a = apply_rope(jnp.broadcast_to(p["a"], (T, p["a"].shape[-1])), -2)
        b = apply_rope(jnp.broadcast_to(p["b"], (T, p["b"].shape[-1])), -2)
        return a @ b.T
    idx = np.arange(T)
    return p["weight"][idx[None, :] - idx[:, None] + n - 1]


def quadratic_attention(q, k, v, bias, norm: float, causal: bool):
    """relu(q k^T / norm + bias)^2 v, lower triangle when causal; [..., n, .] tensors, scores in q's dtype."""
    a = jnp.einsum("...ts,...us->...tu", q, k) / jnp.asarray(norm, q.dtype)
    if bias is not None:
        a = a + bias.astype(a.dtype)
    a = jnp.square(jax.nn.relu(a))
    if causal:
        n = a.shape[-1]
        a = jnp.where(np.tril(np.ones((n, n), dtype=bool)), a, jnp.zeros((), a.dtype))
    return jnp.einsum("...tu,...ue->...te", a, v)


def exclusive_chunk_prefix(state, how: str, dtype):
    """sum_{h<g} state[:, h] for every chunk g; state: [B, G, s, e] (attention/gau/chunk.py).

    "cumsum": a cumulative sum in >= float32 minus each chunk's own state. "matmul": a strictly
    lower-triangular [G, G] matrix of ones times the states, one GEMM in `dtype` (the compute dtype; the
    GPU's GEMM accumulates in float32 inside), as PyTorch's "matmul" form: its backward is a GEMM in `dtype`
    too, where an explicit float32 result would make it a float32 GEMM. "auto": matmul from
    PREFIX_MATMUL_MIN_CHUNKS chunks on. Returned in `dtype`."""
    G = state.shape[1]
    if how == "auto":
        how = "matmul" if G >= PREFIX_MATMUL_MIN_CHUNKS else "cumsum"
    if how == "cumsum":
        acc = state.astype(acc_dtype(state.dtype))
        return (jnp.cumsum(acc, axis=1) - acc).astype(dtype)
    earlier = jnp.asarray(np.tri(G, k=-1), dtype=dtype)  # earlier[g, h] = 1 for h < g
    return jnp.einsum("gh,bhse->bgse", earlier, state.astype(dtype))


def mixed_chunk_attention(q_quad, k_quad, q_lin, k_lin, v, bias, *, chunk: int, causal: bool, parts: str,
                          global_norm: str, chunk_prefix: str = "auto"):
    """FLASH's mixed chunk attention (attention/gau/chunk.py's equations). q_*, k_*: [B, T, s]; v: [B, T, e].

    Padded with zeros to G chunks of C = min(chunk, T) tokens and reshaped to [B, G, C, .]:
      local_g  = relu(q_quad_g k_quad_g^T / chunk + b)^2 v_g            (causal: lower triangle)
      state_h  = k_lin_h^T v_h, in the compute dtype (as PyTorch's autocast GEMM; its sums over chunks
                 run in >= float32, or as the prefix GEMM)
      global_g = q_lin_g (sum_{h<g} state_h) / n_g   causal (exclusive cumulative sum over chunks)
      global   = q_lin (sum_h state_h) / n           bidirectional
    n: global_norm "tokens" (g C causal, C for chunk 0, which sums nothing; T bidirectional), "chunk" (C;
    T) or "none" (1). chunk_prefix: how the causal sum over earlier chunks is formed (`exclusive_chunk_prefix`).
    """
    B, T, _ = v.shape
    C = min(chunk, T)
    G = -(-T // C)
    pad = [(0, 0), (0, G * C - T), (0, 0)]
    qq, kq, ql, kl, vv = (jnp.pad(t, pad).reshape(B, G, C, t.shape[-1]) for t in (q_quad, k_quad, q_lin, k_lin, v))
    local = None
    if parts != "global":
        local = quadratic_attention(qq, kq, vv, None if bias is None else bias[:C, :C], float(chunk), causal)
        if parts == "local":
            return local.reshape(B, G * C, -1)[:, :T]
    # [B, G, s, e] in the compute dtype: an explicit float32 result would make both GEMMs of its backward
    # float32 GEMMs on float32 copies of k_lin and v
    state = jnp.einsum("bgcs,bgce->bgse", kl, vv)
    if causal:
        state = exclusive_chunk_prefix(state, chunk_prefix, ql.dtype)
        if global_norm != "none":
            n = np.maximum(np.arange(G), 1) * C if global_norm == "tokens" else np.full(G, C)
            ql = ql * jnp.asarray((1.0 / n).reshape(1, G, 1, 1), dtype=ql.dtype)
        out = jnp.einsum("bgcs,bgse->bgce", ql, state)
    else:
        n = 1.0 if global_norm == "none" else float(T)
        state = (state.astype(acc_dtype(state.dtype)).sum(axis=1) / n).astype(ql.dtype)  # [B, s, e]: one for all
        out = jnp.einsum("bgcs,bse->bgce", ql, state)
    if local is not None:
        out = local + out
    return out.reshape(B, G * C, -1)[:, :T]


def gau_heads(p: dict, z, rope: bool):
    """The GAU's heads z * gamma_h + beta_h (RoPE'd), [B, T, heads, s], in z's dtype (gamma and beta rounded to
    it first). layer.py's GAU.qkv computes them in float32 and rounds once after RoPE; that form here made
    XLA's backward two slow reductions per layer (H200, quality size, 2K: FLASH's step 67.9 ms against 54.9 in
    this form, NOTES entry 24), so the backends differ by bf16 roundings of the heads (none in float32/64)."""
    heads = z[..., None, :] * p["gamma"].astype(z.dtype) + p["beta"].astype(z.dtype)
    return apply_rope(heads, -3) if rope else heads


def gau(p: dict, x, *, attention: str, e: int, s: int, causal: bool, rope: bool, bias_form: str | None,
        bias_len: int, quad_norm: float | None, chunk: int, parts: str, global_norm: str, chunk_prefix: str):
    """One gated attention unit (attention/gau/layer.py): u, v, z = split(silu(x W + b)); the heads
    z * gamma_h + beta_h (RoPE'd); attn = relu^2 quadratic ("quad", normalised by quad_norm, or the
    length when None) or mixed chunk attention; out = (u * attn) W_out + b_out.
    bias_form: None (no relative bias), "toeplitz" or "rope" over bias_len positions."""
    T = x.shape[1]
    h = jax.nn.silu(dense(p["hidden"], x))
    u, v, z = h[..., :e], h[..., e:2 * e], h[..., 2 * e:]
    heads = gau_heads(p, z, rope)
    if attention == "quad":
        bias = relative_bias(p["rel"], bias_form, bias_len, T) if bias_form else None
        attn = quadratic_attention(heads[:, :, 0], heads[:, :, 1], v, bias, float(quad_norm or T), causal)
    else:
        bias = relative_bias(p["rel"], bias_form, bias_len, bias_len) if bias_form else None
        attn = mixed_chunk_attention(heads[:, :, 0], heads[:, :, 1], heads[:, :, 2], heads[:, :, 3], v, bias,
                                     chunk=chunk, causal=causal, parts=parts, global_norm=global_norm,
                                     chunk_prefix=chunk_prefix)
    return dense(p["out"], u * attn)
