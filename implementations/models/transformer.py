"""Transformer, Transformer+ and Transformer++: the paper's softmax-attention baselines.

  transformer            learned absolute positions, softmax MHSA, GELU FFN (hidden 4d)
  transformer_plus       = transformer with RoPE instead of absolute positions
  transformer_plus_plus  = transformer_plus with a GLU FFN (SwiGLU, hidden 8d/3: same parameters)

Each block: x + MHSA(norm(x)), then x + FFN(norm(x)).
"""
from __future__ import annotations

from ..attention.softmax import KERNELS, MultiHeadAttention
from ..config import ModelConfig
from ..flops import attention_pair, dense, lm_head
from ..layers import FeedForward, GLUFeedForward, LanguageModel, transformer_block
from ..layers.ffn import glu_hidden
from ..layers.norm import NORMS
from ..registry import FidelityNote, ModelSpec, register_model

OPTIONS = {"n_heads": None, "attention_kernel": "sdpa", "norm": "layernorm", "tie_embeddings": True}
CHOICES = {"attention_kernel": KERNELS, "norm": NORMS}


def n_heads(cfg: ModelConfig) -> int:
    return cfg["n_heads"] or max(1, cfg.d_model // 64)


def build_transformer(cfg: ModelConfig, *, rope: bool, glu: bool, attention_factory=None):
    """The shared Transformer backbone; `attention_factory(cfg)` swaps in another attention."""
    d = cfg.d_model
    layers = []
    for _ in range(cfg.n_layers):
        if attention_factory is None:
            attn = MultiHeadAttention(d, n_heads(cfg), causal=cfg.causal, rope=rope,
                                      kernel=cfg["attention_kernel"], max_len=cfg.max_len)
        else:
            attn = attention_factory(cfg)
        ffn = GLUFeedForward(d, glu_hidden(d)) if glu else FeedForward(d, 4 * d)
        layers += transformer_block(d, attn, ffn, cfg["norm"])
    return LanguageModel(cfg.vocab_size, d, layers, max_len=cfg.max_len, absolute_positions=not rope,
                         norm=cfg["norm"], tie_embeddings=cfg["tie_embeddings"])


def ffn_flops(cfg: ModelConfig, glu: bool) -> float:
    d = cfg.d_model
    return dense(d, 2 * glu_hidden(d)) + dense(glu_hidden(d), d) if glu else dense(d, 4 * d) + dense(4 * d, d)


def transformer_flops(cfg: ModelConfig, T: int, *, glu: bool, attention: float | None = None) -> dict[str, float]:
    """Per-token forward FLOPs; `attention` replaces the softmax attention term (per layer)."""
    d, L = cfg.d_model, cfg.n_layers
    attn = attention_pair(T, d, d, cfg.causal) if attention is None else attention
    return {"projections": L * (dense(d, 3 * d) + dense(d, d)), "attention": L * attn,
            "ffn": L * ffn_flops(cfg, glu), "lm_head": lm_head(cfg)}


COMMON_NOTES = (
    FidelityNote("heads", "12 heads at d=768 (BERT-base shape)", "d_model // 64 heads", "n_heads"),
    FidelityNote("attention kernel", "materialised softmax on TPU-v4 (2022)",
                 "PyTorch SDPA (FlashAttention-class); 'materialized' reproduces the 2022 condition",
                 "attention_kernel"),
    FidelityNote("output head", "not stated here", "tied to the token embedding", "tie_embeddings"),
    FidelityNote("biases", "not stated here", "no bias in attention projections or GLU; bias in the GELU FFN"),
)

VARIANTS = {  # with how each appears in tables and figures
    "transformer": dict(rope=False, glu=False, description="vanilla Transformer: absolute positions, softmax MHSA, GELU FFN",
                        label="Transformer", color="#7f7f7f", marker="o"),            # grey
    "transformer_plus": dict(rope=True, glu=False, description="Transformer+: Transformer with RoPE",
                             label="Transformer+", color="#17becf", marker="s"),     # cyan
    "transformer_plus_plus": dict(rope=True, glu=True, description="Transformer++: RoPE + GLU (SwiGLU) FFN",
                                  label="Transformer++", color="#1f77b4", marker="D"),  # blue
}

for _order, (_name, _v) in enumerate(VARIANTS.items()):
    notes = COMMON_NOTES + (
        (FidelityNote("positions", "absolute positions (learned or sinusoidal: not stated here)", "sinusoidal absolute (parameter-free, so sizes stay matched at any max_len)"),)
        if not _v["rope"] else ()) + (
        (FidelityNote("GLU width", "not stated here", "SwiGLU with hidden 8d/3 rounded up to 64 (2048 at d=768): "
                      "same parameters as the 4d GELU FFN"),) if _v["glu"] else ())
    register_model(ModelSpec(
        name=_name, description=_v["description"],
        build=lambda cfg, rope=_v["rope"], glu=_v["glu"]: build_transformer(cfg, rope=rope, glu=glu),
        flops=lambda cfg, T, glu=_v["glu"]: transformer_flops(cfg, T, glu=glu),
        options=dict(OPTIONS), choices=CHOICES, fidelity=notes, family="transformer", quadratic=True, order=_order,
        label=_v["label"], color=_v["color"], marker=_v["marker"], tags=("paper",),
    ))
