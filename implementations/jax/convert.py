"""PyTorch state -> JAX parameter trees: where every JAX leaf comes from.

`layout(cfg)` describes the JAX tree of a model as `Source` leaves, each naming the PyTorch state entries
it is made of (one per layer for the stacked layer parameters, which `jax.lax.scan` runs over) and whether
the entry is transposed (a dense weight: nn.Linear's [out, in] becomes [in, out]). The same description
converts weights (`convert(model.state_dict(), ...)`), gradients (`{name: p.grad}`) and any per-parameter
property (which parameters AdamW decays: suite/jax_step.py), so the two sides cannot drift apart.

    {"embed": [V, d], "norm": {...}, "head": [V, d] (untied only),
     "layers": {...}: every leaf with a leading axis of n_layers (Transformer blocks) or 2 n_layers (GAUs)}
    constants (not trained): {"layers": {"features": [n_layers, m, head_dim]}} for the performer, else {}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..attention.gau.layer import resolve_rel_pos_form
from ..config import ModelConfig

TRANSFORMER_FAMILY = ("transformer", "transformer_plus", "transformer_plus_plus", "performer", "combiner")
GAU_FAMILY = ("flash_quad", "flash")
GLU_FFN = ("transformer_plus_plus", "performer", "combiner")


@dataclass(frozen=True)
class Source:
    """A JAX leaf: the PyTorch state entries it is made of (stacked along a new axis 0 when `stacked`)."""

    names: tuple[str, ...]
    stacked: bool
    transpose: bool = False


def n_stacked(cfg: ModelConfig) -> int:
    """How many identical layers the scan runs over: Transformer blocks, or 2 n_layers GAUs."""
    return 2 * cfg.n_layers if cfg.name in GAU_FAMILY else cfg.n_layers


def _one(name: str, transpose: bool = False) -> Source:
    return Source((name,), stacked=False, transpose=transpose)


def _norm(prefix: str, kind: str, stacked: Callable[[str], Source] | None = None) -> dict[str, Source]:
    leaf = stacked or _one
    keys = {"layernorm": ("weight", "bias"), "scalenorm": ("g",), "rmsnorm": ("weight",)}[kind]
    return {k: leaf(f"{prefix}.{k}") for k in keys}


def rel_pos_form(cfg: ModelConfig) -> str | None:
    """The relative bias form a GAU model uses (None: no bias), resolved as the PyTorch layer resolves it."""
    if not cfg["rel_pos_bias"]:
        return None
    return resolve_rel_pos_form(cfg["rel_pos_form"], rel_pos_len(cfg))


def rel_pos_len(cfg: ModelConfig) -> int:
    """The positions the relative bias covers: max_len for FLASH-Quad, one chunk for FLASH."""
    return cfg.max_len if cfg.name == "flash_quad" else cfg["chunk"]


def layout(cfg: ModelConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parameter sources, constant sources): the JAX trees of `cfg`'s model as Source leaves."""
    L = n_stacked(cfg)

    def stack(template: str, transpose: bool = False) -> Source:
        # template fields: {i} the layer; Transformer blocks: {a} its attention and {f} its FFN sub-layer
        return Source(tuple(template.format(i=i, a=2 * i, f=2 * i + 1) for i in range(L)), True, transpose)

    def dense(prefix: str, bias: bool) -> dict[str, Source]:
        out = {"w": stack(f"{prefix}.weight", transpose=True)}
        if bias:
            out["b"] = stack(f"{prefix}.bias")
        return out

    kind = cfg["norm"]
    consts: dict[str, Any] = {}
    if cfg.name in GAU_FAMILY:
        layer = {"norm": _norm("layers.{i}.norm", kind, stack),
                 "hidden": dense("layers.{i}.fn.to_hidden", True), "out": dense("layers.{i}.fn.to_out", True),
                 "gamma": stack("layers.{i}.fn.scale_offset.gamma"), "beta": stack("layers.{i}.fn.scale_offset.beta")}
        form = rel_pos_form(cfg)
        if form == "toeplitz":
            layer["rel"] = {"weight": stack("layers.{i}.fn.rel_pos_bias.weight")}
        elif form == "rope":
            layer["rel"] = {k: stack(f"layers.{{i}}.fn.rel_pos_bias.{k}") for k in ("a", "b")}
    elif cfg.name in TRANSFORMER_FAMILY:
        ffn = ({"w_in": dense("layers.{f}.fn.w_in", False), "w_out": dense("layers.{f}.fn.w_out", False)}
               if cfg.name in GLU_FFN else
               {"w1": dense("layers.{f}.fn.w1", True), "w2": dense("layers.{f}.fn.w2", True)})
        layer = {"attn_norm": _norm("layers.{a}.norm", kind, stack),
                 "attn": {"qkv": dense("layers.{a}.fn.qkv", False), "out": dense("layers.{a}.fn.out", False)},
                 "ffn_norm": _norm("layers.{f}.norm", kind, stack), "ffn": ffn}
        if cfg.name == "performer":
            consts = {"layers": {"features": stack("layers.{a}.fn.features")}}
    else:
        raise ValueError(f"model {cfg.name!r} has no JAX layout")
    params = {"embed": _one("embed.weight"), "layers": layer, "norm": _norm("norm", kind)}
    if not cfg["tie_embeddings"]:
        params["head"] = _one("head.weight")
    return params, consts


def _numpy(t) -> np.ndarray:
    if hasattr(t, "detach"):  # a torch tensor
        t = t.detach().cpu().numpy()
    return np.asarray(t)


def convert(tensors: Mapping[str, Any], sources) -> Any:
    """The tree of `sources` filled from `tensors` (name -> torch tensor or array), as JAX arrays.

    Always a copy: on the CPU, jnp.asarray of a NumPy view of a torch tensor may share its memory, and a
    later in-place update of the PyTorch model (an optimiser step) would change the JAX parameters."""
    def leaf(src: Source):
        missing = [n for n in src.names if n not in tensors]
        if missing:
            raise KeyError(f"PyTorch state has no {missing[0]!r} (and {len(missing) - 1} more)")
        arrays = [_numpy(tensors[n]) for n in src.names]
        if src.transpose:
            arrays = [a.T for a in arrays]
        return jnp.asarray(np.stack(arrays) if src.stacked else np.array(arrays[0], copy=True))

    return jax.tree.map(leaf, sources, is_leaf=lambda s: isinstance(s, Source))


def map_sources(fn: Callable[[tuple[str, ...]], Any], sources) -> Any:
    """A tree of fn(names) over the Source leaves (e.g. whether those PyTorch parameters are decayed)."""
    return jax.tree.map(lambda s: fn(s.names), sources, is_leaf=lambda s: isinstance(s, Source))
