"""FLASH-Quad and FLASH: stacks of 2 * n_layers gated attention units (Hua et al., 2022).

  flash_quad  GAU with quadratic relu^2 attention over the whole sequence
  flash       GAU with mixed chunk attention (local quadratic + global linear), linear in T
"""
from __future__ import annotations

from ..attention.gau import (CHUNK_PREFIXES, GAU, GLOBAL_NORMS, INITS, KERNELS, PARTS, QUAD_NORMS, REL_POS_FORMS,
                             kernel_problem)
from ..config import ModelConfig
from ..flops import attention_pair, dense, lm_head
from ..layers import LanguageModel, Residual
from ..layers.norm import NORMS
from ..registry import FidelityNote, ModelSpec, register_model

# kernel: the attention op's implementation, "torch" (chunk.py / quad.py) or "triton" (fused kernels,
# attention/gau/triton_chunk.py: the same numbers up to rounding; needs triton and a CUDA GPU)
COMMON = {"expansion": 2, "s": 128, "norm": "layernorm", "rope": True, "rel_pos_bias": True,
          "rel_pos_form": "toeplitz", "init": "paper", "tie_embeddings": True, "kernel": "torch"}
CHOICES = {"norm": NORMS, "rel_pos_form": REL_POS_FORMS, "init": INITS, "quad_norm": QUAD_NORMS, "parts": PARTS,
           "global_norm": GLOBAL_NORMS, "chunk_prefix": CHUNK_PREFIXES, "kernel": KERNELS}
# what this machine can run, checked by make_config before any work (a triton kernel without triton or a GPU)
OPTION_CHECKS = {"kernel": kernel_problem}


def build_gau_model(cfg: ModelConfig, attention: str):
    d = cfg.d_model
    kw = dict(expansion=cfg["expansion"], s=cfg["s"], causal=cfg.causal, max_len=cfg.max_len,
              attention=attention, rope=cfg["rope"], rel_pos_bias=cfg["rel_pos_bias"],
              rel_pos_form=cfg["rel_pos_form"], init=cfg["init"], kernel=cfg["kernel"])
    if attention == "quad":
        kw["quad_norm"] = cfg["quad_norm"]
    else:
        kw.update(chunk=cfg["chunk"], parts=cfg["parts"], chunk_prefix=cfg["chunk_prefix"],
                  global_norm=cfg["global_norm"])
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
    FidelityNote("initialisation", "the paper's code: every dense weight, the scale-offset gains and the "
                 "relative-position bias N(0, 0.02^2); biases and offsets zero",
                 "the same ('paper'); 'legacy' is this suite's init until 2026-11-29 (nn.Linear's default, "
                 "relative bias zero), which left the quadratic attention dead at the start", "init"),
    FidelityNote("relative bias form", "a free Toeplitz vector (2n - 1 entries) below 512 tokens; from 512 on "
                 "b[i, j] = <RoPE_i(a), RoPE_j(b)> for two vectors of 128 entries",
                 "the free Toeplitz vector at every length ('toeplitz'); 'auto' is the paper's rule (applied to "
                 "the positions the bias covers: max_len for FLASH-Quad, the chunk for FLASH), 'rope' the RoPE "
                 "form always. Not the paper's rule by default: drawn from N(0, 0.02^2), <a, b> is ~0.005 and "
                 "often negative at every short offset, so relu^2 starts at ~1e-5 or exactly 0 with no "
                 "gradient; on an H200 FLASH-Quad with it trained 0.11 bpb worse (causal LM 2K, 600 steps) "
                 "and stalled at 2.8 bpb in masked LM 512 (results/NOTES.md, entry 13)", "rel_pos_form"),
    FidelityNote("weight decay", "not stated here", "AdamW decay on matrices (dense weights, embedding) only: "
                 "none on biases, norms, the scale-offset gains and offsets, or the relative-position bias"),
    FidelityNote("norm", "LayerNorm or ScaleNorm (both in the paper's code)", "LayerNorm", "norm"),
    FidelityNote("sizes", "e = 2d, s = 128, 2 GAUs per Transformer block", "the same", "expansion, s"),
    FidelityNote("output head", "not stated here", "tied to the token embedding", "tie_embeddings"),
)

register_model(ModelSpec(
    name="flash_quad", description="FLASH-Quad: GAU stack with quadratic relu^2 attention",
    build=lambda cfg: build_gau_model(cfg, "quad"), flops=lambda cfg, T: gau_flops(cfg, T, "quad"),
    options={**COMMON, "quad_norm": "max_len"}, choices=CHOICES, option_checks=OPTION_CHECKS, fidelity=NOTES,
    family="gau", quadratic=True, order=5,
    label="FLASH-Quad", color="#ff7f0e", marker="P", tags=("paper",),  # orange
))

register_model(ModelSpec(
    name="flash", description="FLASH: GAU stack with mixed chunk attention (local quadratic + global linear)",
    build=lambda cfg: build_gau_model(cfg, "mixed_chunk"), flops=lambda cfg, T: gau_flops(cfg, T, "mixed_chunk"),
    # chunk_prefix: how the causal form sums earlier chunks' states, "auto", "cumsum" or "matmul" (same
    # numbers up to rounding; attention/gau/chunk.py, exclusive_chunk_prefix)
    options={**COMMON, "chunk": 256, "parts": "mixed", "global_norm": "tokens", "chunk_prefix": "auto"}, choices=CHOICES,
    option_checks=OPTION_CHECKS,
    fidelity=NOTES[1:] + (
        FidelityNote("chunk size", "C = 256 (ablated 128..1024)", "256", "chunk"),
        FidelityNote("ablation: attention parts", "mixed, local-only and global-only compared",
                     "'mixed' (default), 'local' (quadratic within chunks only), 'global' (linear over "
                     "earlier chunks only; in causal mode a token then sees nothing of its own chunk)", "parts"),
        FidelityNote("global normaliser", "not settled: the paper's pseudo-code as copied publicly divides the "
                     "global (linear) part by nothing; the public FLASH-pytorch code divides by C (causal) or T",
                     "'tokens': the number of tokens summed, g C for chunk g (causal) or T; 'chunk' and 'none' "
                     "give the other two readings", "global_norm"),
        FidelityNote("T not a multiple of C", "pad and mask", "zero-pad; local normaliser stays 1/C"),
    ), family="gau", quadratic=False, order=6, small_overrides={"chunk": 8},
    label="FLASH", color="#d62728", marker="*", tags=("paper",),  # red
))
