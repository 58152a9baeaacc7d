"""The gated attention unit (GAU) of FLASH-Quad and FLASH (Hua et al., 2022, sections 2 and 3).

For a normalised input x [B, T, d], with the parameters named as in this module:

    u, v, z   = split(silu(x W_hidden + b_hidden))    u, v: [B, T, e] (gate, values);  z: [B, T, s]
    each head = RoPE(z * gamma_h + beta_h)            ScaleOffset: h cheap transforms of one shared z
      FLASH-Quad:  q, k                               (QuadQK)
      FLASH:       q_quad, k_quad, q_lin, k_lin       (MixedChunkQK)
    FLASH-Quad:  attn = relu(q k^T / n + b_rel)^2 v   causal: lower triangle; n = max_len or T (quad_norm)
    FLASH:       attn = mixed chunk attention of q_quad, k_quad, q_lin, k_lin, v (chunk.py's equations)
    out       = (u * attn) W_out + b_out

W_hidden, b_hidden: `to_hidden`; W_out, b_out: `to_out`; gamma, beta: `scale_offset`; b_rel:
`rel_pos_bias` (over max_len positions for FLASH-Quad, inside one chunk for FLASH). The residual and
the norm around the unit are the model's (layers/block.py).
"""
from __future__ import annotations

import importlib.util
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...layers.linear import Linear
from ...layers.rope import RotaryEmbedding
from .chunk import CHUNK_PREFIXES, GLOBAL_NORMS, PARTS, check_choice, mixed_chunk_attention
from .naive import dense_mixed_chunk_matrix
from .quad import quadratic_attention, relu2_scores

QUAD_NORMS = ("max_len", "length")

# The paper's code draws every weight from N(0, 0.02^2) (its WEIGHT_INITIALIZER) and biases and
# offsets start at zero. The relative-position bias must not start at zero: with gains of std 0.02,
# relu(QK^T / n + 0)^2 is ~1e-12 and so is its gradient, which switches the quadratic attention off at
# the start (a FLASH-Quad's later logits moved by ~1e-10 of their scale when a token changed).
INIT_STD = 0.02
INITS = ("paper", "legacy")  # legacy: this suite's init until 2026-11-29 (nn.Linear default, bias zeros)
REL_POS_FORMS = ("auto", "toeplitz", "rope")
# the paper's code builds the bias as a free Toeplitz vector below this many positions, from two
# RoPE-rotated vectors from it on
ROPE_BIAS_MIN_LEN = 512
ROPE_BIAS_DIM = 128  # the length of the paper's two vectors a and b
# how the attention op runs: "torch" (chunk.py / quad.py, the reference) or "triton" (triton_chunk.py: fused
# kernels, forward and backward, scores never in memory; the same numbers up to rounding)
KERNELS = ("torch", "triton")


def kernel_problem(kernel: str) -> str:
    """Why `kernel` cannot run in this process ('' when it can), checked before any work: "triton" needs the
    triton package and a CUDA GPU, or Triton's CPU interpreter (TRITON_INTERPRET=1 set before the kernels are
    first imported). Imports the kernels (so fixes that mode) only when triton is installed."""
    check_choice("GAU kernel", kernel, KERNELS)
    if kernel == "torch":
        return ""
    if importlib.util.find_spec("triton") is None:
        return "needs the Python package triton, which is not installed (pip install triton)"
    try:
        from . import triton_chunk
    except Exception as exc:  # a triton too old or broken for the kernels
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return f"could not load the Triton kernels: {type(exc).__name__}: {first_line}"
    if triton_chunk.INTERPRETED or torch.cuda.is_available():
        return ""
    return ("needs a CUDA GPU, or Triton's CPU interpreter (TRITON_INTERPRET=1 set before the kernels are first "
            "imported)")


class QuadQK(NamedTuple):
    """FLASH-Quad's transforms of z, each [B, T, s], in ScaleOffset's head order."""

    q: torch.Tensor
    k: torch.Tensor


class MixedChunkQK(NamedTuple):
    """FLASH's transforms of z, each [B, T, s], in ScaleOffset's head order: the quadratic (local) part's
    query and key, then the linear (global) part's."""

    q_quad: torch.Tensor
    k_quad: torch.Tensor
    q_lin: torch.Tensor
    k_lin: torch.Tensor


class Hidden(NamedTuple):
    """What GAU.qkv computes from x: the gate u and values v, [B, T, e], and the heads of z."""

    u: torch.Tensor
    v: torch.Tensor
    qk: QuadQK | MixedChunkQK


QK_HEADS = {"quad": QuadQK, "mixed_chunk": MixedChunkQK}  # attention -> its heads of z
ATTENTIONS = tuple(QK_HEADS)
# the heads that make the relu^2 scores lead both orders: q, k (quad) and q_quad, k_quad (mixed_chunk)
RELU2_HEADS = 2


class ScaleOffset(nn.Module):
    """h cheap per-dimension transforms of one shared z: z * gamma_i + beta_i.

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
    check_choice("rel_pos_form", form, REL_POS_FORMS)
    if form == "auto":
        return "toeplitz" if n < ROPE_BIAS_MIN_LEN else "rope"
    return form


class RelativePositionBias(nn.Module):
    """A learned bias b[i, j] that depends on the offset j - i only, for up to n positions.

    form "toeplitz": one free scalar per offset in [-(n-1), n-1] (2n - 1 parameters).
    form "rope": b[i, j] = <RoPE_i(a), RoPE_j(b)> for two learned vectors a, b of ROPE_BIAS_DIM (128)
    entries (the rotation makes the product depend on j - i alone); any length, 256 parameters.
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
            self.rope = RotaryEmbedding(ROPE_BIAS_DIM, max_len=n)

    def forward(self, T: int) -> torch.Tensor:
        if T > self.n:
            raise ValueError(f"relative position bias covers {self.n} positions, asked for {T}")
        if self.form == "rope":
            a, b = self.rope(self.a.expand(T, -1), self.b.expand(T, -1))
            return a @ b.t()  # [T, T]
        idx = torch.arange(T, device=self.weight.device)
        return self.weight[(idx[None, :] - idx[:, None]) + self.n - 1]  # [T, T]


class GAU(nn.Module):
    """One gated attention unit (without its residual and norm). attention: 'quad' or 'mixed_chunk'.

    Options of 'quad': quad_norm (one of QUAD_NORMS). Options of 'mixed_chunk': chunk, parts (PARTS),
    chunk_prefix (CHUNK_PREFIXES), global_norm (GLOBAL_NORMS); see chunk.py. Both: kernel (KERNELS), the
    attention op's implementation: "torch" or the fused Triton kernels of triton_chunk.py (every option
    supported, FLASH-Quad as one chunk of T tokens); refused here when it cannot run (`kernel_problem`).
    """

    def __init__(self, d: int, *, expansion: int, s: int, causal: bool, max_len: int, attention: str,
                 chunk: int = 256, quad_norm: str = "max_len", rope: bool = True, rel_pos_bias: bool = True,
                 rel_pos_form: str = "auto", parts: str = "mixed", chunk_prefix: str = "auto",
                 global_norm: str = "tokens", init: str = "paper", kernel: str = "torch"):
        super().__init__()
        for what, value, valid in (("GAU init", init, INITS), ("global_norm", global_norm, GLOBAL_NORMS),
                                   ("mixed chunk attention parts", parts, PARTS),
                                   ("chunk_prefix", chunk_prefix, CHUNK_PREFIXES),
                                   ("GAU attention", attention, ATTENTIONS), ("quad_norm", quad_norm, QUAD_NORMS)):
            check_choice(what, value, valid)
        if chunk < 1:
            raise ValueError(f"chunk size must be >= 1, got {chunk}")
        problem = kernel_problem(kernel)
        if problem:
            raise ValueError(f"GAU kernel={kernel!r} {problem}")
        self.kernel = kernel
        self.e, self.s = expansion * d, s
        # nn.Linear with bias gradients by a matmul (layers/linear.py: faster compiled, same numbers)
        self.to_hidden = Linear(d, 2 * self.e + s)  # u, v, z
        self.to_out = Linear(self.e, d)
        self.scale_offset = ScaleOffset(s, len(QK_HEADS[attention]._fields))
        self.rope = RotaryEmbedding(s, max_len=max_len) if rope else None
        n_bias = max_len if attention == "quad" else chunk
        self.rel_pos_bias = (RelativePositionBias(n_bias, rel_pos_form, INIT_STD if init == "paper" else 0.0)
                             if rel_pos_bias else None)
        self.attention, self.chunk, self.causal = attention, chunk, causal
        self.quad_norm, self.max_len = quad_norm, max_len
        self.parts, self.chunk_prefix, self.global_norm = parts, chunk_prefix, global_norm
        if init == "paper":  # dense weights N(0, 0.02^2), biases zero (nn.Linear's default otherwise)
            for layer in (self.to_hidden, self.to_out):
                nn.init.normal_(layer.weight, std=INIT_STD)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_out(self.gated_attention(x))

    def qkv(self, x: torch.Tensor) -> Hidden:
        """u, v and the named heads of z (QuadQK or MixedChunkQK), each [B, T, .]."""
        u, v, z = F.silu(self.to_hidden(x)).split([self.e, self.e, self.s], dim=-1)
        heads = self.scale_offset(z)  # [heads, B, T, s], in float32 under autocast (gamma and beta are)
        if self.rope is not None:
            heads = self.rope(heads)[0]  # one pass over all heads
        # back to z's dtype (the compute dtype: bf16 under autocast), rounded once: the attention's GEMMs take
        # the heads in it anyway, and float32 heads cost a [heads, B, T, s] float32 write plus a cast per use
        heads = heads.to(z.dtype)
        if self.attention == "quad":
            q, k = heads.unbind(0)
            return Hidden(u, v, QuadQK(q=q, k=k))
        q_quad, k_quad, q_lin, k_lin = heads.unbind(0)
        return Hidden(u, v, MixedChunkQK(q_quad=q_quad, k_quad=k_quad, q_lin=q_lin, k_lin=k_lin))

    def quad_bias_and_norm(self, T: int) -> tuple[torch.Tensor | None, float]:
        """FLASH-Quad's relative bias [T, T] and score normaliser (max_len, or the paper's T)."""
        bias = self.rel_pos_bias(T) if self.rel_pos_bias is not None else None
        return bias, float(self.max_len if self.quad_norm == "max_len" else T)

    def chunk_bias(self) -> torch.Tensor | None:
        """FLASH's relative bias inside one chunk, [chunk, chunk]."""
        return self.rel_pos_bias(self.chunk) if self.rel_pos_bias is not None else None

    def gated_attention(self, x: torch.Tensor) -> torch.Tensor:
        """u * attn (the module docstring's equations), before the output projection."""
        u, v, qk = self.qkv(x)
        if self.kernel == "triton":
            from .triton_chunk import fused_mixed_chunk_attention as mixed, fused_quadratic_attention as quad
        else:
            mixed, quad = mixed_chunk_attention, quadratic_attention
        if self.attention == "quad":
            bias, norm = self.quad_bias_and_norm(x.shape[1])
            attn = quad(qk.q, qk.k, v, bias, norm, self.causal)
        else:
            attn = mixed(qk.q_quad, qk.k_quad, qk.q_lin, qk.k_lin, v, self.chunk_bias(), self.chunk, self.causal,
                         self.parts, chunk_prefix=self.chunk_prefix, global_norm=self.global_norm)
        return u * attn

    def effective_attention(self, x: torch.Tensor) -> torch.Tensor:
        """The dense T x T attention matrix this layer applies to v (the test reference)."""
        qk = self.qkv(x).qk
        if self.attention == "quad":
            bias, norm = self.quad_bias_and_norm(x.shape[1])
            return relu2_scores(qk.q, qk.k, bias, norm, self.causal)
        b = self.chunk_bias()

        def bias_fn(i, j):  # in-chunk positions
            return b[i, j] if b is not None else torch.zeros((), dtype=x.dtype, device=x.device)

        return dense_mixed_chunk_matrix(qk.q_quad, qk.k_quad, qk.q_lin, qk.k_lin, bias_fn, self.chunk, self.causal,
                                        self.parts, self.global_norm)

    def gradient_probe(self) -> dict[str, list[torch.Tensor]]:
        """After a backward pass: the gradients of the parameters that shape the relu^2 attention weights
        (q/k gains and the relative-position bias), which a zero start can switch off; tests/test_models.py
        checks they are not negligible. The global (linear) part is left out: its weights are the plain
        products q_lin k_lin^T, with no nonlinearity that could switch them off."""
        if self.parts == "global":
            return {}
        grads = [self.scale_offset.gamma.grad[:RELU2_HEADS]]
        if self.rel_pos_bias is not None:
            grads += [p.grad for p in self.rel_pos_bias.parameters()]
        return {"relu^2 attention (q/k gains, relative bias)": grads}

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """forward through the dense T x T matrix of `effective_attention` (the test reference)."""
        u, v, _ = self.qkv(x)
        return self.to_out(u * (self.effective_attention(x) @ v))
