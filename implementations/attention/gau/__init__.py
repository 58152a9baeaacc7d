"""Gated attention unit (GAU) and mixed chunk attention (Hua et al., 2022), laid out by role:

    layer.py  the GAU module (FLASH-Quad's and FLASH's layer), ScaleOffset, RelativePositionBias,
              the named heads of z (QuadQK, MixedChunkQK) and the layer's options and init constants
    quad.py   FLASH-Quad's op: relu^2 attention over the whole sequence (its own reference)
    chunk.py  FLASH's op: mixed chunk attention, chunked (linear in T), and its options
    triton_chunk.py  the same op (and FLASH-Quad's) as fused Triton kernels, forward and backward: the GAU's
              kernel="triton"; imported only when used (it needs triton)
    naive.py  the plain dense T x T reference that chunk.py is tested against

Tuning constants (chunk.PREFIX_MATMUL_MIN_CHUNKS, layer.INIT_STD, ...) are read from their own module and
are not re-exported here: choose the chunk prefix with the `chunk_prefix` option instead.
"""
from .chunk import CHUNK_PREFIXES, GLOBAL_NORMS, PARTS, exclusive_chunk_prefix, global_normaliser, mixed_chunk_attention
from .layer import (ATTENTIONS, GAU, INITS, KERNELS, QUAD_NORMS, REL_POS_FORMS, Hidden, MixedChunkQK, QuadQK,
                    RelativePositionBias, ScaleOffset, kernel_problem)
from .naive import dense_mixed_chunk_matrix
from .quad import quadratic_attention, relu2_scores

__all__ = [
    "GAU", "ScaleOffset", "RelativePositionBias", "Hidden", "QuadQK", "MixedChunkQK",
    "relu2_scores", "quadratic_attention",
    "mixed_chunk_attention", "exclusive_chunk_prefix", "global_normaliser",
    "dense_mixed_chunk_matrix",
    "kernel_problem",
    "ATTENTIONS", "KERNELS", "QUAD_NORMS", "INITS", "REL_POS_FORMS", "PARTS", "CHUNK_PREFIXES", "GLOBAL_NORMS",
]
