"""The shared building blocks of the JAX models: pure functions over parameter dicts.

The same layers as `implementations/layers/` (PyTorch), with these conventions:
  * a dense layer is {"w": [in, out], "b": [out]} (bias optional) and computes x @ w + b (PyTorch's
    nn.Linear keeps its weight [out, in]; convert.py transposes);
  * every function computes in the dtype of its input x and casts the parameters it uses to it (`cast`):
    under bf16 compute the float32 master weights are cast inside the jitted step, where XLA fuses the
    cast into the matmul's operand;
  * norms, softmax, the FAVOR+ features and the sums of chunk states run in at least float32
    (`acc_dtype`), as PyTorch's autocast runs them;
  * position tables (RoPE, sinusoidal) are computed with NumPy at trace time from the sequence length, by
    the same recipe as the PyTorch buffers (float32 angles), so they are constants of the compiled step.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

LAYERNORM_EPS = 1e-5   # torch.nn.LayerNorm's default
SCALENORM_EPS = 1e-5   # implementations/layers/norm.py, ScaleNorm
ROPE_BASE = 10000.0    # implementations/layers/rope.py
SINUSOID_BASE = 10000.0
SINUSOID_SCALE = 0.02  # implementations/layers/embedding.py, SinusoidalPositions

# what a layer keeps for the backward pass (jax.checkpoint around each layer); "none": no checkpoint,
# XLA keeps every intermediate the backward needs
REMAT_POLICIES = {
    "none": None,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # the dense layers' outputs
    "dots_all": jax.checkpoint_policies.dots_saveable,                 # every matmul's output, attention too
    "full": jax.checkpoint_policies.nothing_saveable,                  # recompute the whole layer
}


def acc_dtype(dtype) -> jnp.dtype:
    """At least float32: the precision of norms, softmax and sums."""
    return jnp.promote_types(dtype, jnp.float32)


def cast(tree, dtype):
    """Every floating array of a parameter tree in `dtype`."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def dense(p: dict, x: jax.Array) -> jax.Array:
    """x @ w (+ b), in x's dtype."""
    y = x @ p["w"].astype(x.dtype)
    return y + p["b"].astype(x.dtype) if "b" in p else y


# ----------------------------------------------------------------------------- norms

def norm(kind: str, p: dict, x: jax.Array, out_dtype) -> jax.Array:
    """LayerNorm (weight, bias), ScaleNorm (g: x g / ||x||) or RMSNorm (weight; eps = the dtype's
    machine epsilon, as torch.nn.RMSNorm's default), computed in at least float32, returned in out_dtype."""
    xf = x.astype(acc_dtype(x.dtype))
    if kind == "layernorm":
        mean = xf.mean(-1, keepdims=True)
        var = jnp.square(xf - mean).mean(-1, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + LAYERNORM_EPS) * p["weight"].astype(xf.dtype) + p["bias"].astype(xf.dtype)
    elif kind == "scalenorm":
        y = xf * (p["g"].astype(xf.dtype) / jnp.maximum(jnp.linalg.norm(xf, axis=-1, keepdims=True), SCALENORM_EPS))
    elif kind == "rmsnorm":
        eps = jnp.finfo(xf.dtype).eps
        y = xf * jax.lax.rsqrt(jnp.square(xf).mean(-1, keepdims=True) + eps) * p["weight"].astype(xf.dtype)
    else:
        raise ValueError(f"unknown norm {kind!r}")
    return y.astype(out_dtype)


# ----------------------------------------------------------------------------- positions

def rope_tables(T: int, dim: int, float64: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [T, dim] of RoPE's "half" layout, by RotaryEmbedding.cos_sin's recipe: inverse frequencies
    computed in float64 and rounded to float32 (its buffer), angles in float32, or in float64 for a float64
    model (whose buffer `.double()` made float64): the same tables as the PyTorch models."""
    inv_freq = (ROPE_BASE ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)).astype(np.float32)
    angle_dtype = np.float64 if float64 else np.float32
    angles = np.outer(np.arange(T, dtype=angle_dtype), inv_freq.astype(angle_dtype))
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles), np.sin(angles)


def rotate_half(x: jax.Array) -> jax.Array:
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([-x2, x1], axis=-1)


def apply_rope(x: jax.Array, seq_axis: int) -> jax.Array:
    """Rotate x (its last axis) by the position along `seq_axis` (a negative axis)."""
    T, dim = x.shape[seq_axis], x.shape[-1]
    cos, sin = rope_tables(T, dim, float64=x.dtype == jnp.float64)
    shape = [1] * x.ndim
    shape[seq_axis], shape[-1] = T, dim
    cos, sin = (jnp.asarray(t.reshape(shape), dtype=x.dtype) for t in (cos, sin))
    return x * cos + rotate_half(x) * sin


def sinusoidal_positions(T: int, d: int) -> np.ndarray:
    """[T, d] sinusoidal absolute positions scaled by 0.02, float32 (SinusoidalPositions' buffer)."""
    pos = np.arange(T, dtype=np.float64)[:, None]
    freq = np.exp(-math.log(SINUSOID_BASE) * np.arange(0, d, 2, dtype=np.float64) / d)
    pe = np.zeros((T, d), dtype=np.float64)
    pe[:, 0::2] = np.sin(pos * freq)
    pe[:, 1::2] = np.cos(pos * freq)[:, : d // 2]
    return (pe * SINUSOID_SCALE).astype(np.float32)


# ----------------------------------------------------------------------------- feed-forward

def feed_forward(p: dict, x: jax.Array) -> jax.Array:
    """GELU (exact, erf) MLP: w2(gelu(w1 x)), both with biases (layers/ffn.py, FeedForward)."""
    return dense(p["w2"], jax.nn.gelu(dense(p["w1"], x), approximate=False))


def glu_feed_forward(p: dict, x: jax.Array) -> jax.Array:
    """SwiGLU: w_out(silu(gate) * up) with [gate, up] = w_in x, no biases (layers/ffn.py, GLUFeedForward)."""
    gate, up = jnp.split(dense(p["w_in"], x), 2, axis=-1)
    return dense(p["w_out"], jax.nn.silu(gate) * up)
