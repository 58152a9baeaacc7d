"""FLASH-Quad and FLASH: stacks of 2 * n_layers gated attention units (Hua et al., 2022).

  flash_quad  GAU with quadratic relu^2 attention over the whole sequence
  flash       GAU with mixed chunk attention (local quadratic + global linear), linear in T
"""
from __future__ import annotations

from ..attention.gau import GAU
from ..config import ModelConfig
from ..flops import attention_pair, dense, lm_head
from ..layers import LanguageModel, Residual
from ..registry import FidelityNote, ModelSpec, register_model

COMMON = {"expansion": 2, "s": 128, "norm": "layernorm", "rope": True, "rel_pos_bias": True,
          "tie_embeddings": True}


def build_gau_model(cfg: ModelConfig, attention: str):
    d = cfg.d_model
    kw = dict(expansion=cfg["expansion"], s=cfg["s"], causal=cfg.causal, max_len=cfg.max_len,
              attention=attention, rope=cfg["rope"], rel_pos_bias=cfg["rel_pos_bias"])
    if attention == "quad":
        kw["quad_norm"] = cfg["quad_norm"]
    else:
        kw["chunk"], kw["parts"] = cfg["chunk"], cfg["parts"]
    layers = [Residual(d, GAU(d, **kw), cfg["norm"]) for _ in range(2 * cfg.n_layers)]
    return LanguageModel(cfg.vocab_size, d, layers, max_len=cfg.max_len, norm=cfg["norm"],
                         tie_embeddings=cfg["tie_embeddings"])


def gau_flops(cfg: ModelConfig, T: int, attention: str) -> dict[str, float]:
    d, s = cfg.d_model, cfg["s"]
    e = cfg["expansion"] * d
    L = 2 * cfg.n_layers
    if attention == "quad":
        attn = attention_pair(T, s, e, cfg.causal)
    else:
        C = min(cfg["chunk"], T)
        local = attention_pair(C, s, e, cfg.causal) if cfg["parts"] != "global" else 0.0
        # global: K_lin^T V per token (2 s e) and Q_lin times the s x e state (2 s e)
        attn = local + (2.0 * (2 * s * e) if cfg["parts"] != "local" else 0.0)
    return {"projections": L * (dense(d, 2 * e + s) + dense(e, d)), "attention": L * attn,
            "lm_head": lm_head(cfg)}


NOTES = (
    FidelityNote("attention normaliser", "relu(QK^T / T + b)^2 with T the sequence length",
                 "divide by max_len (equal to T at the training length) so that causal outputs do not "
                 "depend on how many tokens follow; 'length' gives the paper's /T", "quad_norm"),
    FidelityNote("positions", "RoPE and a learned relative position bias", "both, each switchable",
                 "rope, rel_pos_bias"),
    FidelityNote("norm", "LayerNorm or ScaleNorm (both in the paper's code)", "LayerNorm", "norm"),
    FidelityNote("sizes", "e = 2d, s = 128, 2 GAUs per Transformer block", "the same", "expansion, s"),
    FidelityNote("output head", "not stated here", "tied to the token embedding", "tie_embeddings"),
)

register_model(ModelSpec(
    name="flash_quad", description="FLASH-Quad: GAU stack with quadratic relu^2 attention",
    build=lambda cfg: build_gau_model(cfg, "quad"), flops=lambda cfg, T: gau_flops(cfg, T, "quad"),
    options={**COMMON, "quad_norm": "max_len"}, fidelity=NOTES, family="gau", quadratic=True, order=5,
))

register_model(ModelSpec(
    name="flash", description="FLASH: GAU stack with mixed chunk attention (local quadratic + global linear)",
    build=lambda cfg: build_gau_model(cfg, "mixed_chunk"), flops=lambda cfg, T: gau_flops(cfg, T, "mixed_chunk"),
    options={**COMMON, "chunk": 256, "parts": "mixed"}, fidelity=NOTES[1:] + (
        FidelityNote("chunk size", "C = 256 (ablated 128..1024)", "256", "chunk"),
        FidelityNote("ablation: attention parts", "mixed, local-only and global-only compared",
                     "'mixed' (default), 'local' (quadratic within chunks only), 'global' (linear over "
                     "earlier chunks only; in causal mode a token then sees nothing of its own chunk)", "parts"),
        FidelityNote("global normaliser", "by the number of tokens summed (as understood here)",
                     "causal: (g) C tokens of the earlier chunks; bidirectional: T"),
        FidelityNote("T not a multiple of C", "pad and mask", "zero-pad; local normaliser stays 1/C"),
    ), family="gau", quadratic=False, order=6, small_overrides={"chunk": 8},
))
