"""The seven models in JAX: one language-model shell, one layer function per model, scanned over layers.

    apply(params, tokens[B, T]) -> logits[B, T, vocab]

The shell is the PyTorch LanguageModel's (layers/lm.py): token embedding (+ sinusoidal positions for the
vanilla Transformer), pre-norm residual layers, final norm, head tied to the embedding unless
tie_embeddings is off. The layers are identical, so their parameters are stacked (convert.py) and the
shell runs them with `jax.lax.scan` (XLA compiles one layer, not 24: a step compiles in seconds) or in a
Python loop (XLA sees every layer: slower to compile, faster to run; the runner's default, suite/jax_step.py).

Knobs of the JAX backend (not model options: they do not change what is computed):
  dtype   compute dtype (None: the parameters' own; "bfloat16": bf16 matmuls and relu^2 scores on float32
          master weights, with norms, softmax and state sums in float32 and a float32 residual stream,
          as PyTorch's bf16 autocast computes them);
  remat   what each layer keeps for the backward pass (layers.REMAT_POLICIES: "none", "dots", "dots_all",
          "full");
  scan    lax.scan over the layers (True) or a Python loop (False: XLA sees every layer, compiles longer).
Model options are those of the PyTorch registry, checked by `implementations.make_config`; every option
of the seven models is honoured here (`check_supported` refuses any other option set off its default).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ..config import ModelConfig
from ..models.combiner import resolve_block
from ..models.transformer import n_heads
from ..registry import get_spec, is_peer
from . import attention as A
from .convert import GAU_FAMILY, GLU_FFN, TRANSFORMER_FAMILY, convert, layout, rel_pos_form, rel_pos_len
from .layers import REMAT_POLICIES, feed_forward, glu_feed_forward, norm, sinusoidal_positions

MODELS = TRANSFORMER_FAMILY + GAU_FAMILY
SOFTMAX_MODELS = ("transformer", "transformer_plus", "transformer_plus_plus")

# The model options each JAX model honours (all options of the PyTorch models as of this port); an option
# not listed is accepted at its registry default only. "init" acts through the PyTorch model the weights
# come from; "attention_kernel" picks jax.nn.dot_product_attention ("sdpa") or written-out scores;
# "chunk_prefix" the cumulative sum or the triangular GEMM, as in PyTorch.
_TRANSFORMER_OPTIONS = {"n_heads", "attention_kernel", "norm", "tie_embeddings"}
_GAU_OPTIONS = {"expansion", "s", "norm", "rope", "rel_pos_bias", "rel_pos_form", "init", "tie_embeddings"}
HONOURED = {
    "transformer": _TRANSFORMER_OPTIONS, "transformer_plus": _TRANSFORMER_OPTIONS,
    "transformer_plus_plus": _TRANSFORMER_OPTIONS,
    "performer": {"n_heads", "n_features", "causal_chunk", "norm", "tie_embeddings"},
    "combiner": {"n_heads", "block", "norm", "tie_embeddings"},
    "flash_quad": _GAU_OPTIONS | {"quad_norm"},
    "flash": _GAU_OPTIONS | {"chunk", "parts", "global_norm", "chunk_prefix"},
}
DTYPES = {None: None, "float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}
_MISSING = object()


def check_supported(cfg: ModelConfig) -> None:
    """Refuse (ValueError) a model the JAX backend has no port of, or an option it does not honour."""
    spec = get_spec(cfg.name)  # unknown names: ValueError naming the valid models
    if is_peer(cfg.name) or cfg.name not in MODELS:
        raise ValueError(f"model {cfg.name!r} has no JAX implementation; JAX models: {', '.join(MODELS)}")
    for key, value in sorted(cfg.options.items()):
        if key not in HONOURED[cfg.name] and spec.options.get(key, _MISSING) != value:
            raise ValueError(f"model option {key}={value!r} of model {cfg.name!r} is not supported by the JAX "
                             f"backend (it honours: {', '.join(sorted(HONOURED[cfg.name]))})")


def check_knobs(dtype: str | None, remat: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"unknown JAX compute dtype {dtype!r}; valid: {', '.join(map(str, DTYPES))}")
    if remat not in REMAT_POLICIES:
        raise ValueError(f"unknown remat policy {remat!r}; valid: {', '.join(REMAT_POLICIES)}")


def _mixer(cfg: ModelConfig, implementation: str) -> Callable[[dict, jax.Array, dict], jax.Array]:
    """The attention sub-layer of a Transformer-family model: (params, x, constants) -> output."""
    kw = dict(n_heads=n_heads(cfg), causal=cfg.causal)
    if cfg.name == "performer":
        return lambda p, x, c: A.favor_attention(p, x, c["features"], chunk=cfg["causal_chunk"], **kw)
    if cfg.name == "combiner":
        block = resolve_block(cfg)
        return lambda p, x, c: A.combiner_attention(p, x, block=block, **kw)
    rope = cfg.name != "transformer"
    return lambda p, x, c: A.softmax_attention(p, x, rope=rope, kernel=cfg["attention_kernel"],
                                               implementation=implementation, **kw)


def layer_function(cfg: ModelConfig, compute, implementation: str) -> Callable[[jax.Array, dict, dict], jax.Array]:
    """One scanned layer (x, layer params, layer constants) -> x: a Transformer block (attention and FFN
    sub-layers) or one GAU, each sub-layer x + f(norm(x)) with f computed in `compute`."""
    kind = cfg["norm"]
    if cfg.name in GAU_FAMILY:
        form = rel_pos_form(cfg)
        gau = partial(A.gau, attention="quad" if cfg.name == "flash_quad" else "mixed_chunk",
                      e=cfg["expansion"] * cfg.d_model, s=cfg["s"], causal=cfg.causal, rope=cfg["rope"],
                      bias_form=form, bias_len=rel_pos_len(cfg),
                      quad_norm=(cfg.max_len if cfg.options.get("quad_norm") == "max_len" else None),
                      chunk=cfg.options.get("chunk", 0), parts=cfg.options.get("parts", "mixed"),
                      global_norm=cfg.options.get("global_norm", "tokens"),
                      chunk_prefix=cfg.options.get("chunk_prefix", "auto"))

        def gau_layer(x, p, c):
            return x + gau(p, norm(kind, p["norm"], x, compute))
        return gau_layer
    mixer = _mixer(cfg, implementation)
    ffn = glu_feed_forward if cfg.name in GLU_FFN else feed_forward

    def block(x, p, c):
        x = x + mixer(p["attn"], norm(kind, p["attn_norm"], x, compute), c)
        return x + ffn(p["ffn"], norm(kind, p["ffn_norm"], x, compute))
    return block


def forward(cfg: ModelConfig, consts: dict, params: dict, tokens: jax.Array, *, dtype=None, remat: str = "none",
            scan: bool = True, implementation: str = "xla") -> jax.Array:
    """tokens [B, T] -> logits [B, T, vocab] in the compute dtype (the module docstring)."""
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, length], got shape {tokens.shape}")
    T = tokens.shape[1]
    if T > cfg.max_len:
        raise ValueError(f"sequence length {T} exceeds max_len {cfg.max_len}")
    compute = DTYPES[dtype] or params["embed"].dtype
    x = params["embed"][tokens]  # the residual stream stays in the master dtype
    if cfg.name == "transformer":
        x = x + jnp.asarray(sinusoidal_positions(T, cfg.d_model)).astype(x.dtype)
    layer = layer_function(cfg, compute, implementation)
    if REMAT_POLICIES[remat] is not None:
        layer = jax.checkpoint(layer, policy=REMAT_POLICIES[remat])
    stacked = (params["layers"], consts.get("layers", {}))
    if scan:
        x, _ = jax.lax.scan(lambda h, pc: (layer(h, *pc), None), x, stacked)
    else:
        for i in range(jax.tree.leaves(stacked[0])[0].shape[0]):
            x = layer(x, *jax.tree.map(lambda a: a[i], stacked))
    x = norm(cfg["norm"], params["norm"], x, compute)
    head = params.get("head", params["embed"])
    return jnp.einsum("btd,vd->btv", x, head.astype(compute))


def make_apply(cfg: ModelConfig, consts: dict | None = None, *, dtype: str | None = None, remat: str = "none",
               scan: bool = True, platform: str | None = None, sdpa: str | None = None) -> Callable[[dict, jax.Array], jax.Array]:
    """apply(params, tokens) -> logits for `cfg` with the backend knobs (module docstring). The softmax
    models' `sdpa` kernel runs cuDNN's fused attention or XLA's written-out scores: `sdpa` "cudnn" or
    "xla", or None for the choice of `platform` ("cpu", "gpu", ...; default JAX's default backend).
    apply.info records the knobs and the implementation."""
    check_supported(cfg)
    check_knobs(dtype, remat)
    if sdpa not in (None,) + A.SDPA_IMPLEMENTATIONS:
        raise ValueError(f"unknown sdpa implementation {sdpa!r}; valid: {', '.join(A.SDPA_IMPLEMENTATIONS)}")
    implementation = sdpa or A.sdpa_implementation(platform or jax.default_backend(), DTYPES[dtype] or jnp.float32)
    apply = partial(forward, cfg, consts or {}, dtype=dtype, remat=remat, scan=scan, implementation=implementation)
    apply.info = {"dtype": dtype or "params", "remat": remat, "scan": scan,
                  "attention_implementation": (implementation if cfg.name in SOFTMAX_MODELS
                                               and cfg["attention_kernel"] == "sdpa" else "einsum")}
    return apply


def from_torch(model, cfg: ModelConfig | None = None, **knobs: Any) -> tuple[Callable, dict]:
    """(apply, params) with the weights (and the performer's random features) of a PyTorch model built by
    the registry; `cfg` defaults to the model's own (`model.config`); knobs: make_apply's."""
    cfg = cfg or model.config
    check_supported(cfg)
    state = dict(model.state_dict(keep_vars=False))
    if any(t.dtype.is_floating_point and t.dtype.itemsize == 8 for t in state.values()) and not jax.config.jax_enable_x64:
        raise ValueError("a float64 PyTorch model needs JAX's float64 (jax_enable_x64); without it the weights "
                         "would be rounded to float32")
    param_sources, const_sources = layout(cfg)
    return make_apply(cfg, convert(state, const_sources), **knobs), convert(state, param_sources)


def build_model(cfg: ModelConfig, *, seed: int = 0, **knobs: Any) -> tuple[Callable, dict]:
    """(apply, params) for `cfg` (from implementations.make_config), initialised exactly as the PyTorch
    model drawn from torch.manual_seed(seed) (it is built on the CPU and converted): both backends start
    from the same weights."""
    import torch

    from ..registry import build_from_config

    check_supported(cfg)
    torch.manual_seed(seed)
    return from_torch(build_from_config(cfg), cfg, **knobs)
