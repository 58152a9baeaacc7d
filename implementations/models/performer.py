"""Performer: Transformer++ with softmax attention replaced by FAVOR+ (Choromanski et al., 2021).

FAVOR+ estimates the softmax kernel exp(q.k / sqrt(d)) with positive random features
    phi(x) = exp(W x - |x|^2 / 2 - stabiliser) / sqrt(m),     x = q * d^-1/4 (or k * d^-1/4)
where W [m, d] holds m orthogonal random features (blocks of d orthonormal rows from the QR of a
Gaussian matrix, each row rescaled to a chi(d)-distributed norm), so E[phi(q) . phi(k)] = exp(q.k/sqrt(d)).
Attention is then linear in T:
    bidirectional   O = phi(Q) (phi(K)^T V) / phi(Q) (phi(K)^T 1)
    causal          O_t = phi(q_t) S_t / phi(q_t) z_t,   S_t = sum_{s<=t} phi(k_s)^T v_s,  z_t = sum_{s<=t} phi(k_s)

Causal prefix sums are computed chunk-wise (`causal_linear_attention`): inside a chunk of C tokens a
small masked C x C product of features, across chunks an exclusive cumulative sum of the per-chunk
states phi(K_g)^T [V_g, 1]: T / C sequential steps, not T. `causal_linear_attention_reference` is the
plain token-by-token prefix sum it is tested against.

Stabilisers: nothing is taken over the sequence, so in causal mode no output can depend on a later
token (the original code's max over all keys of the sequence, with eps = 1e-4 added inside the features,
leaks the future).
  queries: subtract the per-query row max of the exponent over the m features (depends on q_t only;
           cancels exactly between numerator and denominator).
  keys:    no shift; the exponent is computed in float32 and clamped at KEY_EXPONENT_MAX = 50, a
           data-independent cap so that float32 prefix sums cannot overflow. Since
           w.x - |x|^2/2 = |w|^2/2 - |x - w|^2/2 <= |w|^2/2, the cap is reached only by a key lying near a
           feature vector with |w|^2/2 > 50: practically never at head dim 64 (max |w|^2/2 ~ 50 over 256
           features), possible at head dim 128; below the cap the features are exact. Keys of very large
           norm (rms entry ~6 at head dim 64) underflow to zero features: such keys drop out.
  denominator: floored at DEN_FLOOR = 1e-24 (far below its usual scale, 1e-3 or more), so a query whose
           keys all underflowed gets a ~0 output and finite gradients instead of 0/0.
No eps is added to the features themselves. The feature map, the prefix sums and the states run in
float32 (float64 for float64 inputs) with autocast off, so the model is safe under bf16 autocast.

The random features are a registered buffer per layer (shared by the heads, as in the original code),
drawn from the global torch RNG at build time and fixed: only `redraw_features()` /
`redraw_all_features(model)` draw new ones.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attention.heads import HeadAttention
from ..config import ModelConfig
from ..flops import attention_pair
from ..layers.norm import NORMS
from ..registry import FidelityNote, ModelSpec, register_model
from .transformer import COMMON_NOTES, build_transformer, n_heads, transformer_flops

KEY_EXPONENT_MAX = 50.0  # key features <= e^50 / sqrt(m): float32 prefix sums over 32K tokens stay finite
DEN_FLOOR = 1e-24  # smallest normaliser: keeps 1 / den and its gradients finite in float32


# ----------------------------------------------------------------------------- random features

def orthogonal_gaussian_features(m: int, d: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """m x d positive-random-feature projection: orthogonal d x d blocks, rows rescaled to chi(d) norms.

    Drawn on the CPU (float64 QR) from `generator` or the global torch RNG, returned as float32, so
    the draw depends only on the seed, not on the device.
    """
    blocks = []
    for _ in range(-(-m // d)):
        g = torch.randn(d, d, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(g)
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # a Haar-distributed orthogonal matrix
        blocks.append(q.T)  # rows are orthonormal
    w = torch.cat(blocks, dim=0)[:m]
    norms = torch.randn(m, d, generator=generator, dtype=torch.float64).norm(dim=1)  # chi(d)
    return (w * norms.unsqueeze(1)).float()


def favor_features(x: torch.Tensor, w: torch.Tensor, *, is_query: bool) -> torch.Tensor:
    """phi(x) = exp(w.x' - |x'|^2/2 - stabiliser) / sqrt(m), x' = x d^-1/4. x: [..., T, d]; w: [m, d].

    Queries: stabiliser = row max over the m features (per query, cancels in the normalisation).
    Keys: no stabiliser; the exponent is capped at KEY_EXPONENT_MAX (a constant, never other tokens).
    """
    d, m = x.shape[-1], w.shape[0]
    w = w.to(x.dtype)
    x = x * d ** -0.25
    e = torch.matmul(x, w.T) - 0.5 * x.square().sum(-1, keepdim=True)
    if is_query:
        e = e - e.amax(-1, keepdim=True).detach()
    else:
        e = e.clamp_max(KEY_EXPONENT_MAX)
    return torch.exp(e) * m ** -0.5


# ----------------------------------------------------------------------------- linear attention

def _normalise(numden: torch.Tensor) -> torch.Tensor:
    """[..., D + 1] (numerator, denominator) -> numerator / denominator."""
    num, den = numden[..., :-1], numden[..., -1:]
    return num / den.clamp_min(DEN_FLOOR)


def _with_ones(v: torch.Tensor) -> torch.Tensor:
    """[v, 1]: one product then gives the numerator and the denominator together."""
    return torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)


def bidirectional_linear_attention(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """phi(Q) (phi(K)^T V) / phi(Q) (phi(K)^T 1). phi_q, phi_k: [..., T, m]; v: [..., T, D]."""
    kv = torch.matmul(phi_k.transpose(-1, -2), _with_ones(v))  # [..., m, D + 1]
    return _normalise(torch.matmul(phi_q, kv))


def causal_linear_attention(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Causal FAVOR+ with chunk-wise prefix sums. phi_q, phi_k: [..., T, m]; v: [..., T, D].

    Inside chunk g: (mask(phi(Q_g) phi(K_g)^T)) [V_g, 1]; across chunks: phi(Q_g) S_{g-1} with S_{g-1}
    the exclusive cumulative sum of the chunk states phi(K_h)^T [V_h, 1], h < g. Any T: padded with
    zeros to a multiple of the chunk (padded keys have phi = 0 and add nothing; padded outputs dropped).
    """
    *lead, T, m = phi_q.shape
    C = max(1, min(chunk, T))
    G = -(-T // C)
    pad = G * C - T
    vv = _with_ones(v)
    if pad:
        phi_q, phi_k, vv = (F.pad(t, (0, 0, 0, pad)) for t in (phi_q, phi_k, vv))
    q, k, vv = (t.reshape(*lead, G, C, t.shape[-1]) for t in (phi_q, phi_k, vv))
    scores = torch.matmul(q, k.transpose(-1, -2))  # [..., G, C, C]
    future = torch.ones(C, C, dtype=torch.bool, device=scores.device).triu(1)
    local = torch.matmul(scores.masked_fill(future, 0.0), vv)  # [..., G, C, D + 1]
    states = torch.matmul(k.transpose(-1, -2), vv)  # [..., G, m, D + 1]
    prefix = torch.cumsum(states, dim=-3)
    earlier = torch.cat([torch.zeros_like(prefix[..., :1, :, :]), prefix[..., :-1, :, :]], dim=-3)
    out = _normalise(local + torch.matmul(q, earlier))
    return out.reshape(*lead, G * C, -1)[..., :T, :]


def causal_linear_attention_reference(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The plain token-by-token prefix sum (slow; the reference for `causal_linear_attention`)."""
    T = phi_q.shape[-2]
    S = torch.zeros(*phi_k.shape[:-2], phi_k.shape[-1], v.shape[-1], dtype=v.dtype, device=v.device)
    z = torch.zeros(*phi_k.shape[:-2], phi_k.shape[-1], dtype=v.dtype, device=v.device)
    outs = []
    for t in range(T):
        S = S + phi_k[..., t, :, None] * v[..., t, None, :]
        z = z + phi_k[..., t, :]
        num = torch.einsum("...m,...md->...d", phi_q[..., t, :], S)
        den = (phi_q[..., t, :] * z).sum(-1, keepdim=True)
        outs.append(num / den)
    return torch.stack(outs, dim=-2)


# ----------------------------------------------------------------------------- the attention layer

class FavorAttention(HeadAttention):
    """Multi-head FAVOR+ attention with RoPE on q and k before the feature map.

    Same projections as `MultiHeadAttention`: qkv Linear(d, 3d), out Linear(d, d), no biases.
    """

    def __init__(self, d: int, n_heads: int, *, causal: bool, n_features: int = 256, chunk: int = 64,
                 rope: bool = True, max_len: int | None = None):
        if not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"n_features must be a positive int, got {n_features!r}")
        if not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"causal_chunk must be a positive int, got {chunk!r}")
        super().__init__(d, n_heads, causal=causal, rope=rope, max_len=max_len)
        self.n_features, self.chunk = n_features, chunk
        self.register_buffer("features", orthogonal_gaussian_features(n_features, self.head_dim))

    @torch.no_grad()
    def redraw_features(self, generator: torch.Generator | None = None) -> None:
        """Draw new random features in place (the only way they ever change)."""
        w = orthogonal_gaussian_features(self.n_features, self.head_dim, generator=generator)
        self.features.copy_(w.to(self.features.device, self.features.dtype))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """FAVOR+ on [B, H, T, D] tensors, in float32 (float64 stays float64) with autocast off."""
        dtype = torch.promote_types(q.dtype, torch.float32)
        with torch.autocast(device_type=q.device.type, enabled=False):
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
            phi_q = favor_features(q, self.features, is_query=True)
            phi_k = favor_features(k, self.features, is_query=False)
            if self.causal:
                return causal_linear_attention(phi_q, phi_k, v, self.chunk)
            return bidirectional_linear_attention(phi_q, phi_k, v)


def redraw_all_features(model: nn.Module, generator: torch.Generator | None = None) -> int:
    """Redraw the random features of every FAVOR+ layer in `model`; returns how many were redrawn."""
    n = 0
    for module in model.modules():
        if isinstance(module, FavorAttention):
            module.redraw_features(generator)
            n += 1
    return n


# ----------------------------------------------------------------------------- the registered model

OPTIONS = {"n_heads": None, "n_features": 256, "causal_chunk": 64, "norm": "layernorm", "tie_embeddings": True}


def build_performer(cfg: ModelConfig) -> nn.Module:
    def attention(c: ModelConfig) -> nn.Module:
        return FavorAttention(c.d_model, n_heads(c), causal=c.causal, n_features=c["n_features"],
                              chunk=c["causal_chunk"], rope=True, max_len=c.max_len)

    return build_transformer(cfg, rope=True, glu=True, attention_factory=attention)


def favor_flops_per_token(cfg: ModelConfig, T: int) -> float:
    """Forward FLOPs per token of one FAVOR+ layer (projections qkv / out are counted by the backbone).

    Per head, with d_h = head dim and m = features: feature maps 2 d_h m for the query and 2 d_h m for
    the key; the state update phi(k)^T [v, 1] and the read-out phi(q) S, 2 m (d_h + 1) each (the +1
    column is the denominator). Causal adds the masked in-chunk product over C keys, counted like the
    other chunked kernels (half of the C x C block, `attention_pair`).
    """
    H = n_heads(cfg)
    dh, m = cfg.d_model // H, cfg["n_features"]
    per_head = 2 * (2.0 * dh * m) + 2 * (2.0 * m * (dh + 1))
    if cfg.causal:
        per_head += attention_pair(min(cfg["causal_chunk"], T), m, dh + 1, causal=True)
    return H * per_head


NOTES = (
    COMMON_NOTES[0],
    FidelityNote("backbone", "Performer baseline's backbone not stated here",
                 "Transformer++ (RoPE + SwiGLU FFN, hidden 8d/3 rounded up to 64) so that only the attention "
                 "differs from transformer_plus_plus; RoPE is applied to q and k before the feature map"),
    FidelityNote("random features", "number used in the paper unknown here",
                 "m = 256 per head (the Performer paper's usual setting; ~ d_h ln d_h = 266 at d_h = 64), "
                 "orthogonal blocks with chi(d_h) row norms, one draw per layer shared by its heads",
                 "n_features"),
    FidelityNote("feature redraw", "the original Performer redraws the features periodically during training",
                 "drawn once at build time (a buffer, reproducible from torch.manual_seed) and fixed; "
                 "redrawn only by an explicit redraw_features() / redraw_all_features(model)"),
    FidelityNote("stabiliser", "original code: per-query row max for queries, max over all keys of the "
                 "sequence for keys, plus eps = 1e-4 inside the features (leaks the future when causal)",
                 "queries: per-query row max (cancels exactly); keys: none, exponent in float32 capped at 50 "
                 "(a constant; reached only by a key near a feature vector); no eps in the features; "
                 "normaliser floored at 1e-24; the same feature map in both modes"),
    FidelityNote("causal prefix sums", "a token-level prefix sum (scan)",
                 "chunk-wise: masked C x C product inside a chunk, exclusive cumulative sum of float32 states "
                 "across chunks (mathematically the same)", "causal_chunk"),
    FidelityNote("precision", "not stated here",
                 "feature maps, states and normalisation in float32 with autocast off (bf16 only in the "
                 "projections and FFN)"),
    COMMON_NOTES[2],
    FidelityNote("biases", "not stated here", "no bias in the attention projections or the SwiGLU FFN"),
)

register_model(ModelSpec(
    name="performer",
    description="Performer: Transformer++ with FAVOR+ attention (positive orthogonal random features)",
    build=build_performer,
    flops=lambda cfg, T: transformer_flops(cfg, T, glu=True, attention=favor_flops_per_token(cfg, T)),
    options=dict(OPTIONS), choices={"norm": NORMS}, causal=True, bidirectional=True, quadratic=False, fidelity=NOTES,
    family="transformer", order=3, label="Performer", color="#9467bd", marker="^", tags=("paper",),  # purple
))
