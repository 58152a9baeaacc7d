"""Analytic FLOPs per token.

Convention: one multiply-accumulate = 2 FLOPs; only matrix products are counted (element-wise work,
norms, softmax and feature maps are left out, as in the usual MFU accounting); the LM head counts,
the embedding lookup does not. Attention is counted as executed: a causal softmax or GAU attention
over T keys costs half of the full T x T product (FlashAttention-class kernels and our chunked
kernels skip the masked blocks). Training FLOPs = 3 x forward (the backward pass costs twice the
forward). Each model's spec provides `flops(cfg, T) -> {component: forward FLOPs per token}`.
"""
from __future__ import annotations

from .config import ModelConfig


def dense(d_in: int, d_out: int) -> float:
    return 2.0 * d_in * d_out


def attention_pair(T_keys: float, d_qk: int, d_v: int, causal: bool) -> float:
    """q k^T then a v for one query over T_keys keys: 2 T d_qk + 2 T d_v, halved when causal."""
    return (0.5 if causal else 1.0) * 2.0 * T_keys * (d_qk + d_v)


def lm_head(cfg: ModelConfig) -> float:
    return dense(cfg.d_model, cfg.vocab_size)


def forward_flops_per_token(name: str, cfg: ModelConfig, T: int) -> float:
    from .registry import get_spec

    return float(sum(get_spec(name).flops(cfg, T).values()))


def train_flops_per_token(name: str, cfg: ModelConfig, T: int) -> float:
    return 3.0 * forward_flops_per_token(name, cfg, T)
