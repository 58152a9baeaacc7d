"""FLASH's mixed chunk attention as Triton kernels, forward and backward (the GAU's `kernel="triton"`).

The same op as chunk.py (whose docstring has the equations), with S = q_quad_g k_quad_g^T * scale + b_rel
the pre-activation scores of chunk g (scale = 1 / chunk), P = relu(S)^2 (causal: lower triangle):

    out_g   = P v_g + (q_lin_g / n_g) state_g        state_g = sum_{h<g} k_lin_h^T v_h  (causal)
                                                     state_g = sum_h k_lin_h^T v_h      (bidirectional)
    dP      = dout_g v_g^T                           dS = 2 relu(S) * dP      (causal: lower triangle)
    dv_g    = P^T dout_g + k_lin_g D_g               D_g = sum_{h>g} q_lin_h^T dout_h / n_h  (causal;
                                                           bidirectional: the sum over every chunk)
    dq_quad = scale dS k_quad_g      dk_quad = scale dS^T q_quad_g      d b_rel = sum_{batch, g} dS
    dq_lin  = dout_g state_g^T / n_g                 dk_lin_g = v_g D_g^T

Two versions of the kernels. KERNEL_VERSION picks one ("v2" by default); version 2 takes the chunks it can
hold as one tile (V2_MAX_OPERAND, V2_MAX_BLOCK_C: C <= 256 at s 128; 16-bit dtypes on a GPU) and everything
else (FLASH-Quad's one chunk of T > 256 tokens, longer chunks, larger s, fp32 on a GPU) falls back to
version 1.

Version 2 (a program is BLOCK_T tokens of one chunk and sees the whole chunk, BLOCK_C >= C, at once; every
product is computed transposed, the chunk's BLOCK_C tokens as the GEMM's rows, so that the probabilities are
a shared-memory operand and not a register operand copied into each warp group):

    _forward_v2:   grid (tiles of queries, B). P^T [BLOCK_C keys, BLOCK_T queries] once (causal: masked,
                   not skipped), then a loop over value tiles: out^T = v^T P^T + state_g^T (q_lin / n_g)^T,
                   each output tile written once.
    _backward_v2:  grid (tiles of keys, B). P [BLOCK_C queries, BLOCK_T keys] once, relu(S) kept in fp32.
                   One loop over value tiles: dv^T = dout^T P + D_g^T k_lin^T (dv written once), dk_lin^T +=
                   D_g v^T, dP += dout v^T [BLOCK_C, BLOCK_T]. Then dS = 2 relu(S) dP, dk_quad^T = scale
                   q_quad^T dS (written once) and dS itself to a [B G, C, C] buffer in the inputs' dtype.
    torch:         the states and D_g as before, dq_quad = scale dS k_quad (one batched GEMM on the dS buffer),
                   d b_rel = the fp32 sum of dS over chunks, dq_lin = dout state_g^T / n_g. No atomics anywhere:
                   every output is deterministic.

Why (counts per chunk at the quality size, C 256, s 128, e 1024, bf16; 256 chunks per call of 65,536 tokens;
HBM bytes count each tensor once per kernel, re-reads of a chunk's tiles by its own programs as L2 hits):

    GEMM FLOPs (M = 10^6)      q k^T 16.8; P v, dout v^T, P^T dout 134.2 each; every [C, s] x [s, e] or
                               [s, C] x [C, e] product of the global part 67.1; dS k, dS^T q 16.8 each
    torch op (compiled)        forward 285 MFLOP, backward 570: 855 per chunk, 219 GFLOP per call: 0.3 ms
                               at 700 TFLOP/s, so it is not FLOP-bound. HBM: forward ~4.4 MiB (S written and
                               read twice, P v written then re-read by a baddbmm [before entry 30], the states and their
                               prefix 1.3 MiB), backward ~8.6 MiB (dP, dS, P, the two halves of dv added in
                               their own pass 1.5 MiB, the global part's 5 GEMMs and suffix 3.9 MiB): ~13 MiB
                               per chunk, 3.4 GB per call, ~0.75 ms at 4.5 TB/s, in about 25 kernels.
    version 1                  S recomputed for each of e / 128 = 8 value tiles in the forward and in dv
                               (+235 MFLOP), the dq/dk pass's dP = dout v^T in 64 x 64 x 64 steps (tiny GEMMs,
                               a load per step), and ~3 x 10^7 fp32 atomics per call for dk and d b_rel: 3.35 ms.
    version 2                  forward 285 MFLOP (as the torch op: causal tiles are masked, not skipped), backward
                               654 (S again, 16.8; the states recomputed, 67.1): 939 per chunk (+10%). HBM:
                               forward ~2.8 MiB (the kernel 1.4: reads q, k, q_lin, v, the state once, writes
                               out once), backward ~6.3 MiB (the kernel 2.2: reads q, k, k_lin, v, dout, D_g,
                               writes dv, dk, dk_lin and dS once; the rest is the torch part, states 1.3, D_g
                               1.4, dq_lin 0.9, dq 0.25, d b_rel 0.13): ~9 MiB per chunk, 2.3 GB per call, in
                               about 12 kernels (below 8 chunks the fp32 states and D_g are cast to bf16
                               first, +0.75 MiB each, as the torch op casts its states). L2: each program
                               re-reads its chunk's v (forward) or dout (backward) and the state or D_g: ~3-4
                               MiB per chunk in each direction at BLOCK_T 64, ~1 GB per call.
    not chosen                 cuBLAS for the wide GEMMs with the element-wise work fused in Triton: that is
                               what the compiled torch op already is (Inductor fuses relu^2, mask, bias into
                               one pass), so it would save one or two passes over [C, C] (~0.25 MiB of 13).
    next                       the state saved from the forward (-1.3 MiB) and dq_lin inside _backward_v2
                               (-0.9 MiB): then the torch part of the backward is D_g only.

Version 1 (a program is one tile of BLOCK_T tokens of one chunk; BLOCK_T tiles both the queries and the
keys, so exactly one key tile per query tile straddles the causal diagonal):

    _forward:      grid (tiles of queries, tiles of BLOCK_E value columns, B). Walks the key tiles of its
                   chunk, below the diagonal without a mask, then the diagonal tile with it (tiles above are
                   never visited); S and P live in registers only and each P tile multiplies BLOCK_E columns
                   of v. S is recomputed for every value tile (cost s / BLOCK_E of the P v products). The
                   global part, (q_lin / n_g) state_g, goes into the same fp32 accumulator: out is written once.
    _backward_dv:  grid (tiles of keys, tiles of value columns, B): P^T recomputed from q_quad, k_quad, times
                   dout, plus k_lin D_g; dv written once.
    _backward_dqk: grid (tiles of queries, B): dq_lin (dout state_g^T over all value columns), then per key
                   tile S recomputed and dP = dout v^T summed over all value columns (in steps of
                   Tiles.e_dqk), dS; dq_quad kept in registers, dk_quad added into an fp32 buffer with
                   tl.atomic_add (several query tiles share a key tile), d b_rel added into one of
                   BIAS_GRAD_SLOTS fp32 copies of the [C, C] bias (fewer atomics on the same address),
                   which torch sums. Atomics add in no fixed order: on a GPU dk_quad and d b_rel may differ
                   in their last bits from run to run (the other outputs are deterministic).

Version 1 never writes a score, probability or score-gradient tile to memory; version 2 writes dS once
(C x C per chunk, as the torch op does). The chunk states, their exclusive prefix over chunks
(chunk.exclusive_chunk_prefix: the `chunk_prefix` option) and the backward's suffix sums D_g are torch
GEMMs on [s, e] per chunk, outside the kernels (and dk_lin, in version 1).

Supported: every option of chunk.py (parts "mixed", "local", "global"; global_norm "tokens", "chunk",
"none"; every chunk_prefix; any T, the last chunk shorter; any bias [C, C] or larger, as FLASH-Quad's
[T, T]), in both versions, so nothing falls back to the torch path. FLASH-Quad is the special case of one
chunk of T tokens, parts "local" and scale 1 / norm (`quadratic_attention`). The kernels take fp32, bf16 or
fp16 tensors (accumulating in fp32); under autocast the inputs are cast to the autocast dtype first, as the
torch op's matmuls are. CPU tensors run only through Triton's interpreter: TRITON_INTERPRET=1 must be set before this
module is first imported (Triton fixes the mode when a kernel is defined); `INTERPRETED` says which.

The op is one torch.library custom op, "flash_repro::mixed_chunk_attention", with its backward another
("flash_repro::mixed_chunk_attention_backward") and fake (shape-only) implementations of both, so
torch.compile keeps each GAU layer one graph around an opaque call. It needs `triton`; layer.kernel_problem
says whether it can run here without importing this module.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import triton
import triton.language as tl
from triton.runtime import interpreter as _triton_interpreter

from .chunk import CHUNK_PREFIXES, GLOBAL_NORMS, PARTS, PREFIX_MATMUL_MIN_CHUNKS, STATE_SUM_DTYPE, check_choice
from .chunk import exclusive_chunk_prefix, global_normaliser

OP_NAME = "flash_repro::mixed_chunk_attention"
MIN_DOT = 16  # tl.dot needs every dimension of a tile to be at least 16


class Tiles(NamedTuple):
    """Tile sizes of one launch; s is always one tile (its next power of two, at least MIN_DOT)."""

    t: int  # BLOCK_T: tokens per tile, queries and keys alike
    e: int  # BLOCK_E: value columns per program of _forward and _backward_dv
    e_dqk: int  # value columns per step of _backward_dqk's loops over e (it holds dq, S and dP besides)
    warps: int
    stages: int = 3  # software-pipelining depth of the loops (Triton's default on NVIDIA GPUs)


# On a GPU, by dtype. Chosen at s 128, e 1024, C 256 by compiling for sm_90 (an H200) without running it
# (tests/test_triton_chunk.py does so too): bf16 uses at most 208 KB of shared memory (a block may have
# 227 KB) and spills at most 24 bytes; the forward with 4 warps spilled more, _backward_dqk at e-steps of 128
# spilled and at 256 needed 416 KB. Not yet timed (gpu_check.py times alternatives). fp32 with exact
# ("ieee") products runs without tensor cores and spills: for checking, not for speed.
GPU_TILES = {torch.bfloat16: Tiles(64, 128, 64, 8), torch.float16: Tiles(64, 128, 64, 8),
             torch.float32: Tiles(32, 64, 64, 4)}
# Small tiles under the interpreter, so that tests at C 32, e 32 cross tile boundaries in both directions.
INTERPRETER_TILES = Tiles(16, 16, 16, 1)
# d b_rel is summed by atomics into this many fp32 copies of the [C, C] bias (chunk j of sequence b adds to
# copy (b G + j) mod slots), at most BIAS_GRAD_BYTES of them; torch sums the copies.
BIAS_GRAD_SLOTS = 64
BIAS_GRAD_BYTES = 64 * 2**20


class KernelTiles(NamedTuple):
    """Tile sizes of one version 2 kernel; the chunk is always one tile (BLOCK_C, its next power of two)."""

    t: int  # BLOCK_T: tokens per program (its queries in _forward_v2, its keys in _backward_v2)
    e: int  # BLOCK_E: value columns per step of the program's loop over e
    warps: int
    stages: int


class ChunkTiles(NamedTuple):
    """The tiles of _forward_v2 and of _backward_v2."""

    fwd: KernelTiles
    bwd: KernelTiles


# Version 2 on a GPU, by dtype (16-bit only: fp32 takes version 1, see V2_MAX_OPERAND). Chosen at s 128,
# e 1024, C 256 by compiling for sm_90 (an H200) without running it and reading registers and spills with
# cuobjdump -res-usage (256 threads may use 255 registers each): _forward_v2 at (64, 64, 8, 2) uses 184
# registers, no spill, 156 KB of shared memory (4 warps: spills; 3 stages: 221 KB); _backward_v2 at
# (64, 32, 8, 3) 254 registers, no spill, 115 KB; at (32, 32, 8, 3) 218, no spill, 82 KB; BLOCK_E 64 spills
# 24 bytes at BLOCK_T 32 and 384 at 64. (With fp32 states both spilled: the glue casts them to the inputs'
# dtype first, as the torch op does.) Not yet timed: gpu_check.py times alternatives.
GPU_TILES_V2 = {dtype: ChunkTiles(KernelTiles(64, 64, 8, 2), KernelTiles(64, 32, 8, 3))
                for dtype in (torch.bfloat16, torch.float16)}
# Version 2 holds the chunk's q_quad or k_quad, [BLOCK_C, BLOCK_S], in shared memory: at most this many
# elements of 16 bits (C 256 at s 128); larger chunks (FLASH-Quad's one chunk of T), larger s and fp32 on a
# GPU take version 1.
V2_MAX_OPERAND = 256 * 128
V2_MAX_BLOCK_C = 256  # and the chunk at most this long (its fp32 scores are [BLOCK_C, BLOCK_T] in registers)
# Under the interpreter: small tiles, and a small limit so that tests run both versions (chunks of 16 and 32
# at s 16 take version 2, FLASH-Quad's one chunk of 37 tokens version 1).
INTERPRETER_TILES_V2 = ChunkTiles(KernelTiles(16, 16, 1, 2), KernelTiles(16, 16, 1, 2))
INTERPRETER_V2_MAX_OPERAND = 32 * 16
KERNEL_VERSIONS = ("v2", "v1")
# Which kernels a call takes: "v2" (the default; chunks longer than the limit fall back to v1) or "v1"
# (read at every call; gpu_check.py sets it to compare the two)
KERNEL_VERSION = "v2"
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _defined_interpreted() -> bool:
    return isinstance(_forward, _triton_interpreter.InterpretedFunction)


# --------------------------------------------------------------------------------------------------- kernels
@triton.jit
def _scores(q, k, bias_ptr, offs_m, offs_n, m_ok, n_ok, stride_bm, stride_bn, scale,
            HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr):
    """S = q k^T * scale + b_rel[offs_m, offs_n] in fp32: [rows of q, rows of k]."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
    if HAS_BIAS:
        b = tl.load(bias_ptr + offs_m[:, None] * stride_bm + offs_n[None, :] * stride_bn,
                    mask=m_ok[:, None] & n_ok[None, :], other=0.0)
        s += b.to(tl.float32)
    return s


@triton.jit
def _rows_s(P, row_s, offs, ok, offs_s, s_ok, S_DIM):
    """The [rows, BLOCK_S] tile of a [tokens, s] tensor P at rows `offs` of the chunk whose first element is
    row_s, zero outside the chunk (`ok`) and past s (`s_ok`)."""
    return tl.load(P + row_s + offs[:, None] * S_DIM + offs_s[None, :], mask=ok[:, None] & s_ok[None, :], other=0.0)


@triton.jit
def _relu_tile(A, B, row_s, offs_a, offs_b, a_ok, b_ok, offs_s, s_ok, S_DIM, bias_ptr, stride_ba, stride_bb, scale,
               CAUSAL: tl.constexpr, KEYS_FIRST: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr):
    """The tiles a [rows of A, s] and b [rows of B, s] of one chunk (row_s: its first element) and relu(S)
    [rows of A, rows of B] in fp32, zero outside the chunk and, causal, where the key comes after the query
    (KEYS_FIRST: A holds the keys, so relu(S)^T; else A holds the queries)."""
    a = _rows_s(A, row_s, offs_a, a_ok, offs_s, s_ok, S_DIM)
    b = _rows_s(B, row_s, offs_b, b_ok, offs_s, s_ok, S_DIM)
    s = _scores(a, b, bias_ptr, offs_a, offs_b, a_ok, b_ok, stride_ba, stride_bb, scale, HAS_BIAS, PRECISION)
    keep = a_ok[:, None] & b_ok[None, :]
    if CAUSAL:
        if KEYS_FIRST:
            keep = keep & (offs_a[:, None] <= offs_b[None, :])
        else:
            keep = keep & (offs_b[None, :] <= offs_a[:, None])
    return a, b, tl.where(keep, tl.maximum(s, 0.0), 0.0)


@triton.jit
def _chunk_program(T, C, S_DIM, E_DIM, BATCH_AXIS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_S: tl.constexpr):
    """What a program owns: grid axis 0 the tiles of BLOCK_T tokens of every chunk, axis BATCH_AXIS the sequence.
    Returns its sequence and chunk, the chunk's length, its first token in the chunk, its own tokens and all
    the chunk's tokens (BLOCK_C of them; offsets and in-chunk masks), the s offsets and mask, and the chunk's
    first element in the [B, T, s] and [B, T, e] tensors."""
    tiles = (C + BLOCK_T - 1) // BLOCK_T  # (not tl.cdiv: see INTERPRETED)
    pid_t, pid_b = tl.program_id(0), tl.program_id(BATCH_AXIS)
    g = pid_t // tiles
    chunk_start = g.to(tl.int64) * C
    chunk_len = tl.minimum(C, T - g * C)
    start = (pid_t % tiles) * BLOCK_T
    offs_own = start + tl.arange(0, BLOCK_T)
    offs_all = tl.arange(0, BLOCK_C)
    offs_s = tl.arange(0, BLOCK_S)
    row_s = (pid_b.to(tl.int64) * T + chunk_start) * S_DIM
    row_e = (pid_b.to(tl.int64) * T + chunk_start) * E_DIM
    return (pid_b, g, chunk_len, start, offs_own, offs_own < chunk_len, offs_all, offs_all < chunk_len, offs_s,
            offs_s < S_DIM, row_s, row_e)


@triton.jit
def _forward_tile(acc, q, kq_ptr, v_ptr, bias_ptr, start_n, chunk_len, S_DIM, E_DIM,
                  stride_bm, stride_bn, scale, offs_m, offs_s, offs_e, m_ok, s_ok, e_ok,
                  DIAGONAL: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_T: tl.constexpr, PRECISION: tl.constexpr):
    """acc += P v for one key tile starting at start_n (DIAGONAL: the tile the causal mask cuts)."""
    offs_n = start_n + tl.arange(0, BLOCK_T)
    n_ok = offs_n < chunk_len
    k = tl.load(kq_ptr + offs_n[:, None] * S_DIM + offs_s[None, :], mask=n_ok[:, None] & s_ok[None, :], other=0.0)
    v = tl.load(v_ptr + offs_n[:, None] * E_DIM + offs_e[None, :], mask=n_ok[:, None] & e_ok[None, :], other=0.0)
    s = _scores(q, k, bias_ptr, offs_m, offs_n, m_ok, n_ok, stride_bm, stride_bn, scale, HAS_BIAS, PRECISION)
    p = tl.maximum(s, 0.0)
    p = p * p
    if DIAGONAL:
        p = tl.where(offs_n[None, :] <= offs_m[:, None], p, 0.0)
    return acc + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)


@triton.jit
def _forward(QQ, KQ, QL, V, STATE, INV_N, BIAS, OUT, T, C, S_DIM, E_DIM, scale,
             stride_sb, stride_sg, stride_ss, stride_bm, stride_bn,
             CAUSAL: tl.constexpr, HAS_LOCAL: tl.constexpr, HAS_GLOBAL: tl.constexpr, HAS_BIAS: tl.constexpr,
             BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_E: tl.constexpr, PRECISION: tl.constexpr):
    # the program's queries m (from start_m), one tile of value columns (grid axis 1)
    pid_b, g, chunk_len, start_m, offs_m, m_ok, _, _, offs_s, s_ok, row_s, row_e = _chunk_program(
        T, C, S_DIM, E_DIM, 2, BLOCK_T, BLOCK_T, BLOCK_S)
    offs_e = tl.program_id(1) * BLOCK_E + tl.arange(0, BLOCK_E)
    e_ok = offs_e < E_DIM
    acc = tl.full([BLOCK_T, BLOCK_E], 0.0, tl.float32)
    if HAS_LOCAL:
        q = _rows_s(QQ, row_s, offs_m, m_ok, offs_s, s_ok, S_DIM)
        # causal: key tiles before the query tile's own, unmasked, then the diagonal tile; none above it
        below = start_m if CAUSAL else chunk_len
        for start_n in range(0, below, BLOCK_T):
            acc = _forward_tile(acc, q, KQ + row_s, V + row_e, BIAS, start_n, chunk_len, S_DIM, E_DIM,
                                stride_bm, stride_bn, scale, offs_m, offs_s, offs_e, m_ok, s_ok, e_ok,
                                False, HAS_BIAS, BLOCK_T, PRECISION)
        if CAUSAL:
            acc = _forward_tile(acc, q, KQ + row_s, V + row_e, BIAS, start_m, chunk_len, S_DIM, E_DIM,
                                stride_bm, stride_bn, scale, offs_m, offs_s, offs_e, m_ok, s_ok, e_ok,
                                True, HAS_BIAS, BLOCK_T, PRECISION)
    if HAS_GLOBAL:
        ql = _rows_s(QL, row_s, offs_m, m_ok, offs_s, s_ok, S_DIM)
        state = tl.load(STATE + pid_b.to(tl.int64) * stride_sb + g * stride_sg + offs_s[:, None] * stride_ss
                        + offs_e[None, :], mask=s_ok[:, None] & e_ok[None, :], other=0.0)
        acc += tl.dot(ql, state.to(ql.dtype), input_precision=PRECISION) * tl.load(INV_N + g)
    tl.store(OUT + row_e + offs_m[:, None] * E_DIM + offs_e[None, :], acc.to(OUT.dtype.element_ty),
             mask=m_ok[:, None] & e_ok[None, :])


@triton.jit
def _dv_tile(acc, k, qq_ptr, do_ptr, bias_ptr, start_m, chunk_len, S_DIM, E_DIM, stride_bm, stride_bn, scale,
             offs_n, offs_s, offs_e, n_ok, s_ok, e_ok,
             DIAGONAL: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_T: tl.constexpr, PRECISION: tl.constexpr):
    """acc += P^T dout for one query tile starting at start_m; P^T recomputed as relu(S^T)^2."""
    offs_m = start_m + tl.arange(0, BLOCK_T)
    m_ok = offs_m < chunk_len
    q = tl.load(qq_ptr + offs_m[:, None] * S_DIM + offs_s[None, :], mask=m_ok[:, None] & s_ok[None, :], other=0.0)
    do = tl.load(do_ptr + offs_m[:, None] * E_DIM + offs_e[None, :], mask=m_ok[:, None] & e_ok[None, :], other=0.0)
    # S^T [keys, queries]: the bias read transposed
    st = _scores(k, q, bias_ptr, offs_n, offs_m, n_ok, m_ok, stride_bn, stride_bm, scale, HAS_BIAS, PRECISION)
    pt = tl.maximum(st, 0.0)
    pt = pt * pt
    if DIAGONAL:
        pt = tl.where(offs_n[:, None] <= offs_m[None, :], pt, 0.0)
    return acc + tl.dot(pt.to(do.dtype), do, input_precision=PRECISION)


@triton.jit
def _backward_dv(QQ, KQ, KL, DO, DSUF, BIAS, DV, T, C, S_DIM, E_DIM, scale,
                 stride_db, stride_dg, stride_ds, stride_bm, stride_bn,
                 CAUSAL: tl.constexpr, HAS_LOCAL: tl.constexpr, HAS_GLOBAL: tl.constexpr, HAS_BIAS: tl.constexpr,
                 BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_E: tl.constexpr, PRECISION: tl.constexpr):
    # the program's keys n (from start_n), one tile of value columns (grid axis 1)
    pid_b, g, chunk_len, start_n, offs_n, n_ok, _, _, offs_s, s_ok, row_s, row_e = _chunk_program(
        T, C, S_DIM, E_DIM, 2, BLOCK_T, BLOCK_T, BLOCK_S)
    offs_e = tl.program_id(1) * BLOCK_E + tl.arange(0, BLOCK_E)
    e_ok = offs_e < E_DIM
    acc = tl.full([BLOCK_T, BLOCK_E], 0.0, tl.float32)
    if HAS_LOCAL:
        k = _rows_s(KQ, row_s, offs_n, n_ok, offs_s, s_ok, S_DIM)
        # causal: the diagonal query tile (masked), then the later ones (unmasked); none before it
        after = start_n + BLOCK_T if CAUSAL else 0
        if CAUSAL:
            acc = _dv_tile(acc, k, QQ + row_s, DO + row_e, BIAS, start_n, chunk_len, S_DIM, E_DIM, stride_bm,
                           stride_bn, scale, offs_n, offs_s, offs_e, n_ok, s_ok, e_ok, True, HAS_BIAS, BLOCK_T,
                           PRECISION)
        for start_m in range(after, chunk_len, BLOCK_T):
            acc = _dv_tile(acc, k, QQ + row_s, DO + row_e, BIAS, start_m, chunk_len, S_DIM, E_DIM, stride_bm,
                           stride_bn, scale, offs_n, offs_s, offs_e, n_ok, s_ok, e_ok, False, HAS_BIAS, BLOCK_T,
                           PRECISION)
    if HAS_GLOBAL:
        kl = _rows_s(KL, row_s, offs_n, n_ok, offs_s, s_ok, S_DIM)
        dsuf = tl.load(DSUF + pid_b.to(tl.int64) * stride_db + g * stride_dg + offs_s[:, None] * stride_ds
                       + offs_e[None, :], mask=s_ok[:, None] & e_ok[None, :], other=0.0)
        acc += tl.dot(kl, dsuf.to(kl.dtype), input_precision=PRECISION)
    tl.store(DV + row_e + offs_n[:, None] * E_DIM + offs_e[None, :], acc.to(DV.dtype.element_ty),
             mask=n_ok[:, None] & e_ok[None, :])


@triton.jit
def _dqk_tile(dq, q, kq_ptr, v_ptr, do_ptr, bias_ptr, dk_ptr, dbias_ptr, start_n, chunk_len, C, S_DIM, E_DIM,
              stride_bm, stride_bn, scale, offs_m, offs_s, m_ok, s_ok,
              DIAGONAL: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr,
              PRECISION: tl.constexpr):
    """One key tile: dS recomputed (dP = dout v^T over all value columns); dq += dS k; dk, d b_rel by atomics."""
    offs_n = start_n + tl.arange(0, BLOCK_T)
    n_ok = offs_n < chunk_len
    k = tl.load(kq_ptr + offs_n[:, None] * S_DIM + offs_s[None, :], mask=n_ok[:, None] & s_ok[None, :], other=0.0)
    s = _scores(q, k, bias_ptr, offs_m, offs_n, m_ok, n_ok, stride_bm, stride_bn, scale, HAS_BIAS, PRECISION)
    dp = tl.full([BLOCK_T, BLOCK_T], 0.0, tl.float32)
    for start_e in range(0, E_DIM, BLOCK_E):
        offs_e = start_e + tl.arange(0, BLOCK_E)
        e_ok = offs_e < E_DIM
        do = tl.load(do_ptr + offs_m[:, None] * E_DIM + offs_e[None, :], mask=m_ok[:, None] & e_ok[None, :],
                     other=0.0)
        v = tl.load(v_ptr + offs_n[:, None] * E_DIM + offs_e[None, :], mask=n_ok[:, None] & e_ok[None, :], other=0.0)
        dp += tl.dot(do, tl.trans(v), input_precision=PRECISION)
    ds = 2.0 * tl.maximum(s, 0.0) * dp
    if DIAGONAL:
        ds = tl.where(offs_n[None, :] <= offs_m[:, None], ds, 0.0)
    dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    dk = tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION) * scale
    tl.atomic_add(dk_ptr + offs_n[:, None] * S_DIM + offs_s[None, :], dk, mask=n_ok[:, None] & s_ok[None, :])
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_m[:, None] * C + offs_n[None, :], ds, mask=m_ok[:, None] & n_ok[None, :])
    return dq


@triton.jit
def _backward_dqk(QQ, KQ, V, DO, STATE, INV_N, BIAS, DQQ, DK32, DQL, DBIAS, T, C, S_DIM, E_DIM, scale, slots,
                  stride_sb, stride_sg, stride_ss, stride_bm, stride_bn,
                  CAUSAL: tl.constexpr, HAS_LOCAL: tl.constexpr, HAS_GLOBAL: tl.constexpr, HAS_BIAS: tl.constexpr,
                  BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_E: tl.constexpr, PRECISION: tl.constexpr):
    # the program's queries m (from start_m), every value column
    pid_b, g, chunk_len, start_m, offs_m, m_ok, _, _, offs_s, s_ok, row_s, row_e = _chunk_program(
        T, C, S_DIM, E_DIM, 1, BLOCK_T, BLOCK_T, BLOCK_S)
    out_ptrs = row_s + offs_m[:, None] * S_DIM + offs_s[None, :]
    if HAS_GLOBAL:  # dq_lin = dout state_g^T / n_g
        dql = tl.full([BLOCK_T, BLOCK_S], 0.0, tl.float32)
        for start_e in range(0, E_DIM, BLOCK_E):
            offs_e = start_e + tl.arange(0, BLOCK_E)
            e_ok = offs_e < E_DIM
            do = tl.load(DO + row_e + offs_m[:, None] * E_DIM + offs_e[None, :], mask=m_ok[:, None] & e_ok[None, :],
                         other=0.0)
            state = tl.load(STATE + pid_b.to(tl.int64) * stride_sb + g * stride_sg + offs_s[:, None] * stride_ss
                            + offs_e[None, :], mask=s_ok[:, None] & e_ok[None, :], other=0.0)
            dql += tl.dot(do, tl.trans(state.to(do.dtype)), input_precision=PRECISION)
        dql = dql * tl.load(INV_N + g)
        tl.store(DQL + out_ptrs, dql.to(DQL.dtype.element_ty), mask=m_ok[:, None] & s_ok[None, :])
    if HAS_LOCAL:
        q = tl.load(QQ + out_ptrs, mask=m_ok[:, None] & s_ok[None, :], other=0.0)
        dq = tl.full([BLOCK_T, BLOCK_S], 0.0, tl.float32)
        dbias = DBIAS + ((pid_b * ((T + C - 1) // C) + g) % slots).to(tl.int64) * C * C
        below = start_m if CAUSAL else chunk_len
        for start_n in range(0, below, BLOCK_T):
            dq = _dqk_tile(dq, q, KQ + row_s, V + row_e, DO + row_e, BIAS, DK32 + row_s, dbias, start_n, chunk_len,
                           C, S_DIM, E_DIM, stride_bm, stride_bn, scale, offs_m, offs_s, m_ok, s_ok,
                           False, HAS_BIAS, BLOCK_T, BLOCK_E, PRECISION)
        if CAUSAL:
            dq = _dqk_tile(dq, q, KQ + row_s, V + row_e, DO + row_e, BIAS, DK32 + row_s, dbias, start_m, chunk_len,
                           C, S_DIM, E_DIM, stride_bm, stride_bn, scale, offs_m, offs_s, m_ok, s_ok,
                           True, HAS_BIAS, BLOCK_T, BLOCK_E, PRECISION)
        tl.store(DQQ + out_ptrs, (dq * scale).to(DQQ.dtype.element_ty), mask=m_ok[:, None] & s_ok[None, :])


# ------------------------------------------------------------------------------------- version 2 kernels
# One program owns BLOCK_T tokens of one chunk and sees the whole chunk at once (BLOCK_C >= C keys or
# queries, within V2_MAX_OPERAND): S and P are computed once per program and the value columns are an inner loop.
# Every product is written transposed, with the chunk's BLOCK_C tokens as the rows (the GEMMs' M) and the
# program's BLOCK_T tokens as the columns: the probabilities are then a B operand, which Triton keeps in
# shared memory, instead of an A operand in registers, which on Hopper (wgmma) it would copy into every warp
# group (BLOCK_T 64 at 8 warps spilled about 1.7 KB per thread that way).
@triton.jit
def _forward_v2(QQ, KQ, QL, V, STATE, INV_N, BIAS, OUT, T, C, S_DIM, E_DIM, scale,
                stride_sb, stride_sg, stride_ss, stride_bm, stride_bn,
                CAUSAL: tl.constexpr, HAS_LOCAL: tl.constexpr, HAS_GLOBAL: tl.constexpr, HAS_BIAS: tl.constexpr,
                BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_E: tl.constexpr,
                PRECISION: tl.constexpr):
    """out^T [value columns, the program's queries m] = v_g^T P^T + state_g^T (q_lin / n_g)^T, with
    P^T [BLOCK_C keys, BLOCK_T queries] computed once; one value tile per step."""
    # the program's queries m, every key n of the chunk
    pid_b, g, _, _, offs_m, m_ok, offs_n, n_ok, offs_s, s_ok, row_s, row_e = _chunk_program(
        T, C, S_DIM, E_DIM, 1, BLOCK_T, BLOCK_C, BLOCK_S)
    if HAS_LOCAL:  # relu(S)^T [keys, queries]: the bias read transposed
        k, q, rt = _relu_tile(KQ, QQ, row_s, offs_n, offs_m, n_ok, m_ok, offs_s, s_ok, S_DIM, BIAS, stride_bn,
                              stride_bm, scale, CAUSAL, True, HAS_BIAS, PRECISION)
        pt = (rt * rt).to(V.dtype.element_ty)
    if HAS_GLOBAL:
        qlt = tl.trans(_rows_s(QL, row_s, offs_m, m_ok, offs_s, s_ok, S_DIM))
        inv_n = tl.load(INV_N + g)
        state_ptr = STATE + pid_b.to(tl.int64) * stride_sb + g * stride_sg
    for start_e in range(0, E_DIM, BLOCK_E):
        offs_e = start_e + tl.arange(0, BLOCK_E)
        e_ok = offs_e < E_DIM
        acc = tl.full([BLOCK_E, BLOCK_T], 0.0, tl.float32)
        if HAS_LOCAL:
            v = tl.load(V + row_e + offs_n[:, None] * E_DIM + offs_e[None, :], mask=n_ok[:, None] & e_ok[None, :],
                        other=0.0)
            acc = tl.dot(tl.trans(v), pt, acc, input_precision=PRECISION)
        if HAS_GLOBAL:
            state = tl.load(state_ptr + offs_s[:, None] * stride_ss + offs_e[None, :],
                            mask=s_ok[:, None] & e_ok[None, :], other=0.0).to(qlt.dtype)
            acc += tl.dot(tl.trans(state), qlt, input_precision=PRECISION) * inv_n
        tl.store(OUT + row_e + offs_m[None, :] * E_DIM + offs_e[:, None], acc.to(OUT.dtype.element_ty),
                 mask=m_ok[None, :] & e_ok[:, None])


@triton.jit
def _backward_v2(QQ, KQ, KL, V, DO, DSUF, BIAS, DV, DKQ, DKL, DS, T, C, S_DIM, E_DIM, scale,
                 stride_db, stride_dg, stride_ds, stride_bm, stride_bn,
                 CAUSAL: tl.constexpr, HAS_LOCAL: tl.constexpr, HAS_GLOBAL: tl.constexpr, HAS_BIAS: tl.constexpr,
                 BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_E: tl.constexpr,
                 PRECISION: tl.constexpr):
    """For the program's BLOCK_T keys (= tokens) n, with P [BLOCK_C queries, BLOCK_T keys] computed once.
    One loop over value tiles: dv^T = dout^T P + D_g^T k_lin^T, dk_lin^T = D_g v^T, dP = dout v^T
    [BLOCK_C, BLOCK_T]; then dS, dk_quad^T = scale q_quad^T dS, and dS written to DS [B G, C, C] (torch takes
    dq_quad and d b_rel from it). No atomics."""
    # the program's keys n, every query m of the chunk
    pid_b, g, _, _, offs_n, n_ok, offs_m, m_ok, offs_s, s_ok, row_s, row_e = _chunk_program(
        T, C, S_DIM, E_DIM, 1, BLOCK_T, BLOCK_C, BLOCK_S)
    if HAS_LOCAL:  # relu(S) [queries, keys]
        q, k, r = _relu_tile(QQ, KQ, row_s, offs_m, offs_n, m_ok, n_ok, offs_s, s_ok, S_DIM, BIAS, stride_bm,
                             stride_bn, scale, CAUSAL, False, HAS_BIAS, PRECISION)
        p = (r * r).to(DO.dtype.element_ty)
    if HAS_GLOBAL:
        klt = tl.trans(_rows_s(KL, row_s, offs_n, n_ok, offs_s, s_ok, S_DIM))
        dklt = tl.full([BLOCK_S, BLOCK_T], 0.0, tl.float32)
        dsuf_ptr = DSUF + pid_b.to(tl.int64) * stride_db + g * stride_dg
    if HAS_LOCAL:
        dp = tl.full([BLOCK_C, BLOCK_T], 0.0, tl.float32)
    for start_e in range(0, E_DIM, BLOCK_E):  # one loop: dv, dk_lin and dP
        offs_e = start_e + tl.arange(0, BLOCK_E)
        e_ok = offs_e < E_DIM
        acc = tl.full([BLOCK_E, BLOCK_T], 0.0, tl.float32)
        v = tl.load(V + row_e + offs_n[:, None] * E_DIM + offs_e[None, :], mask=n_ok[:, None] & e_ok[None, :],
                    other=0.0)
        if HAS_LOCAL:
            do = tl.load(DO + row_e + offs_m[:, None] * E_DIM + offs_e[None, :], mask=m_ok[:, None] & e_ok[None, :],
                         other=0.0)
            acc = tl.dot(tl.trans(do), p, acc, input_precision=PRECISION)
            dp = tl.dot(do, tl.trans(v), dp, input_precision=PRECISION)
        if HAS_GLOBAL:
            d = tl.load(dsuf_ptr + offs_s[:, None] * stride_ds + offs_e[None, :], mask=s_ok[:, None] & e_ok[None, :],
                        other=0.0).to(klt.dtype)
            acc = tl.dot(tl.trans(d), klt, acc, input_precision=PRECISION)
            dklt = tl.dot(d, tl.trans(v), dklt, input_precision=PRECISION)
        tl.store(DV + row_e + offs_n[None, :] * E_DIM + offs_e[:, None], acc.to(DV.dtype.element_ty),
                 mask=n_ok[None, :] & e_ok[:, None])
    if HAS_GLOBAL:
        tl.store(DKL + row_s + offs_n[None, :] * S_DIM + offs_s[:, None], dklt.to(DKL.dtype.element_ty),
                 mask=n_ok[None, :] & s_ok[:, None])
    if HAS_LOCAL:
        ds = (2.0 * r * dp).to(DS.dtype.element_ty)  # r = relu(S) masked, held in fp32 through the loop
        # dS of chunk (b, g) [queries, keys]; zero outside the chunk's tokens
        ds_ptr = DS + (pid_b * ((T + C - 1) // C) + g).to(tl.int64) * C * C
        tl.store(ds_ptr + offs_m[:, None] * C + offs_n[None, :], ds,
                 mask=(offs_m[:, None] < C) & (offs_n[None, :] < C))
        q = _rows_s(QQ, row_s, offs_m, m_ok, offs_s, s_ok, S_DIM)  # reloaded (L2): not held through the loop
        dkt = tl.dot(tl.trans(q), ds.to(q.dtype), input_precision=PRECISION) * scale
        tl.store(DKQ + row_s + offs_n[None, :] * S_DIM + offs_s[:, None], dkt.to(DKQ.dtype.element_ty),
                 mask=n_ok[None, :] & s_ok[:, None])


# ------------------------------------------------------------------------------------------ torch-side glue
# Kernels defined for Triton's CPU interpreter (TRITON_INTERPRET=1 when this module was imported). They use
# Triton's builtins only, no function of triton.language's standard library (tl.zeros, tl.cdiv, tl.sum, ...):
# those are kernels themselves, defined when triton is imported, so compiled if triton came in before the
# variable was set.
INTERPRETED = _defined_interpreted()


class Launch(NamedTuple):
    """The shapes and tile sizes one call launches with."""

    B: int
    T: int
    s: int
    e: int
    C: int  # tokens per chunk (the chunk option, or T when the sequence is shorter)
    G: int  # chunks
    tiles: Tiles
    block_s: int
    precision: str  # tl.dot's input_precision
    version: str = "v1"  # which kernels: "v2" when KERNEL_VERSION is, the dtype has GPU_TILES_V2 (on a GPU)
    #                      and [BLOCK_C, BLOCK_S] fits V2_MAX_OPERAND and V2_MAX_BLOCK_C
    tiles_v2: Optional[ChunkTiles] = None
    block_c: int = 0  # version 2: the chunk as one tile

    @property
    def programs(self) -> int:
        """Tiles of tokens over all chunks of one sequence (version 1)."""
        return self.G * triton.cdiv(self.C, self.tiles.t)

    def programs_v2(self, t: int) -> int:
        """Tiles of t tokens over all chunks of one sequence."""
        return self.G * triton.cdiv(self.C, t)


def device_problem(device: torch.device) -> str:
    """Why the kernels cannot run on tensors of `device` in this process ('' when they can)."""
    if device.type == "cuda" or INTERPRETED:
        return ""
    return (f"kernel='triton' cannot run on {device.type} tensors: Triton runs on CUDA GPUs, or on the CPU through "
            "its interpreter when TRITON_INTERPRET=1 is set before the kernels are first imported")


def _launch(q: torch.Tensor, v: torch.Tensor, chunk: int) -> Launch:
    B, T, s = q.shape
    e = v.shape[-1]
    C = min(chunk, T)
    tiles = GPU_TILES[q.dtype] if q.device.type == "cuda" else INTERPRETER_TILES
    # a chunk shorter than a tile: smaller tiles (never below MIN_DOT)
    t = max(MIN_DOT, min(tiles.t, triton.next_power_of_2(C)))
    e_max = max(MIN_DOT, triton.next_power_of_2(e))
    tiles = tiles._replace(t=t, e=min(tiles.e, e_max), e_dqk=min(tiles.e_dqk, e_max))
    # fp32 inputs: exact products ("ieee") unless torch itself allows TF32 matmuls; bf16 / fp16 ignore it
    # ("tf32" is tl.dot's default)
    tf32 = q.dtype != torch.float32 or torch.get_float32_matmul_precision() != "highest"
    check_choice("triton kernel version", KERNEL_VERSION, KERNEL_VERSIONS)
    block_c = max(MIN_DOT, triton.next_power_of_2(C))
    cuda = q.device.type == "cuda"
    version, tiles_v2 = "v1", None
    block_s = max(MIN_DOT, triton.next_power_of_2(s))
    tiles_v2 = GPU_TILES_V2.get(q.dtype) if cuda else INTERPRETER_TILES_V2
    if (KERNEL_VERSION == "v2" and tiles_v2 is not None
            and block_c * block_s <= (V2_MAX_OPERAND if cuda else INTERPRETER_V2_MAX_OPERAND)
            and block_c <= V2_MAX_BLOCK_C):
        version = "v2"
        tiles_v2 = ChunkTiles(*(k._replace(t=min(k.t, block_c), e=min(k.e, e_max)) for k in tiles_v2))
    else:
        tiles_v2 = None
    return Launch(B, T, s, e, C, -(-T // C), tiles, block_s, "tf32" if tf32 else "ieee", version, tiles_v2, block_c)


def _chunked(x: torch.Tensor, L: Launch) -> torch.Tensor:
    """[B, T, .] -> [B, G, C, .], zero-padded to G C tokens."""
    pad = L.G * L.C - L.T
    if pad:
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))
    return x.reshape(L.B, L.G, L.C, x.shape[-1])


def exclusive_chunk_suffix(x: torch.Tensor, how: str = "auto") -> torch.Tensor:
    """sum_{h>g} x[:, h] for every chunk g; x: [B, G, s, e]; `how` as in chunk.exclusive_chunk_prefix
    (whose mirror image this is: the backward of the causal prefix)."""
    check_choice("chunk prefix", how, CHUNK_PREFIXES)
    if how == "auto":
        how = "matmul" if x.shape[1] >= PREFIX_MATMUL_MIN_CHUNKS else "cumsum"
    if how == "cumsum":
        acc = x.to(torch.promote_types(x.dtype, STATE_SUM_DTYPE))
        return acc.sum(dim=1, keepdim=True) - acc.cumsum(dim=1)
    B, G = x.shape[:2]  # "matmul"
    later = torch.ones(G, G, device=x.device, dtype=x.dtype).triu(1)  # later[g, h] = 1 for h > g
    return torch.matmul(later, x.reshape(B, G, -1)).view_as(x)


def _inverse_normaliser(global_norm: str, causal: bool, L: Launch, device) -> torch.Tensor:
    """1 / n_g for every chunk, fp32 [G] (bidirectional: one value repeated)."""
    n = global_normaliser(global_norm, causal, L.C, L.T, L.G, device, torch.float32)
    return (1.0 / n).expand(L.G).contiguous()


def _states(k_lin: torch.Tensor, v: torch.Tensor, causal: bool, chunk_prefix: str, L: Launch) -> torch.Tensor:
    """What q_lin_g multiplies: sum_{h<g} k_lin_h^T v_h, [B, G, s, e] (causal), or the sum over all tokens,
    [B, 1, s, e] (bidirectional; read with a zero chunk stride)."""
    if not causal:
        return torch.matmul(k_lin.transpose(1, 2), v).unsqueeze(1)
    state = torch.matmul(_chunked(k_lin, L).transpose(-1, -2), _chunked(v, L))
    return exclusive_chunk_prefix(state, chunk_prefix)


def _state_grads(q_lin: torch.Tensor, grad: torch.Tensor, inv_n: torch.Tensor, causal: bool, chunk_prefix: str,
                 L: Launch) -> torch.Tensor:
    """D_g = sum_{h>g} q_lin_h^T dout_h / n_h, [B, G, s, e] (causal), or over all tokens, [B, 1, s, e]."""
    if not causal:
        return torch.matmul((q_lin * inv_n[0].to(q_lin.dtype)).transpose(1, 2), grad).unsqueeze(1)
    ql = _chunked(q_lin, L) * inv_n.view(1, L.G, 1, 1).to(q_lin.dtype)
    return exclusive_chunk_suffix(torch.matmul(ql.transpose(-1, -2), _chunked(grad, L)), chunk_prefix)


def _bias_args(bias: Optional[torch.Tensor], like: torch.Tensor):
    if bias is None:
        return like, 0, 0  # a placeholder pointer the kernels never read (HAS_BIAS false)
    return bias, bias.stride(0), bias.stride(1)


def _check(q_quad, k_quad, q_lin, k_lin, v, bias, chunk, parts, global_norm, chunk_prefix) -> None:
    check_choice("mixed chunk attention parts", parts, PARTS)
    check_choice("global_norm", global_norm, GLOBAL_NORMS)
    check_choice("chunk_prefix", chunk_prefix, CHUNK_PREFIXES)
    if chunk < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk}")
    problem = device_problem(v.device)
    if problem:
        raise RuntimeError(problem)
    C = min(chunk, v.shape[1])
    if bias is not None and (bias.dim() != 2 or bias.shape[0] < C or bias.shape[1] < C):
        raise ValueError(f"the relative bias must be at least [{C}, {C}], got {list(bias.shape)}")


def _check_dtypes(q_quad, k_quad, q_lin, k_lin, v) -> None:
    if v.dtype not in KERNEL_DTYPES or any(t.dtype != v.dtype for t in (q_quad, k_quad, q_lin, k_lin)):
        raise ValueError(f"kernel='triton' takes q, k, v of one dtype among {KERNEL_DTYPES}, got "
                         f"{[t.dtype for t in (q_quad, k_quad, q_lin, k_lin, v)]}")


@torch.library.custom_op(OP_NAME, mutates_args=())
def _op(q_quad: torch.Tensor, k_quad: torch.Tensor, q_lin: torch.Tensor, k_lin: torch.Tensor, v: torch.Tensor,
        bias: Optional[torch.Tensor], chunk: int, scale: float, causal: bool, parts: str, global_norm: str,
        chunk_prefix: str) -> torch.Tensor:
    q_quad, k_quad, q_lin, k_lin, v = (t.contiguous() for t in (q_quad, k_quad, q_lin, k_lin, v))
    L = _launch(q_quad, v, chunk)
    out = torch.empty_like(v)
    has_local, has_global = parts != "global", parts != "local"
    state = _states(k_lin, v, causal, chunk_prefix, L) if has_global else v.new_zeros(1, 1, 1, 1)
    inv_n = _inverse_normaliser(global_norm, causal, L, v.device)
    b, sbm, sbn = _bias_args(bias, v)
    if L.version == "v2":
        tf = L.tiles_v2.fwd
        state = state.to(v.dtype)  # (fp32 after a cumsum; the kernel would convert it, spilling registers)
        _forward_v2[(L.programs_v2(tf.t), L.B)](
            q_quad, k_quad, q_lin, v, state, inv_n, b, out, L.T, L.C, L.s, L.e, scale,
            state.stride(0), state.stride(1) if causal else 0, state.stride(2), sbm, sbn,
            CAUSAL=causal, HAS_LOCAL=has_local, HAS_GLOBAL=has_global, HAS_BIAS=bias is not None,
            BLOCK_T=tf.t, BLOCK_C=L.block_c, BLOCK_S=L.block_s, BLOCK_E=tf.e, PRECISION=L.precision,
            num_warps=tf.warps, num_stages=tf.stages)
        return out
    grid = (L.programs, triton.cdiv(L.e, L.tiles.e), L.B)
    _forward[grid](q_quad, k_quad, q_lin, v, state, inv_n, b, out, L.T, L.C, L.s, L.e, scale,
                   state.stride(0), state.stride(1) if causal else 0, state.stride(2), sbm, sbn,
                   CAUSAL=causal, HAS_LOCAL=has_local, HAS_GLOBAL=has_global, HAS_BIAS=bias is not None,
                   BLOCK_T=L.tiles.t, BLOCK_S=L.block_s, BLOCK_E=L.tiles.e, PRECISION=L.precision,
                   num_warps=L.tiles.warps, num_stages=L.tiles.stages)
    return out


# The fake (shape-only) implementations give contiguous tensors, as the real ones return (empty_like would
# keep a permuted input's strides, and Inductor trusts the fake's strides).
@_op.register_fake
def _op_fake(q_quad, k_quad, q_lin, k_lin, v, bias, chunk, scale, causal, parts, global_norm, chunk_prefix):
    return v.new_empty(v.shape)


@torch.library.custom_op(OP_NAME + "_backward", mutates_args=())
def _op_backward(grad: torch.Tensor, q_quad: torch.Tensor, k_quad: torch.Tensor, q_lin: torch.Tensor,
                 k_lin: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor], chunk: int, scale: float,
                 causal: bool, parts: str, global_norm: str, chunk_prefix: str
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq_quad, dk_quad, dq_lin, dk_lin, dv, d bias); the gradients of a part that `parts` leaves out are
    empty tensors (no gradient), as is d bias without a bias; d bias is [C, C] fp32."""
    grad, q_quad, k_quad, q_lin, k_lin, v = (t.contiguous() for t in (grad, q_quad, k_quad, q_lin, k_lin, v))
    L = _launch(q_quad, v, chunk)
    has_local, has_global = parts != "global", parts != "local"
    has_bias = bias is not None and has_local
    inv_n = _inverse_normaliser(global_norm, causal, L, v.device)
    b, sbm, sbn = _bias_args(bias, v)
    placeholder = v.new_zeros(1, 1, 1, 1)
    state = _states(k_lin, v, causal, chunk_prefix, L) if has_global else placeholder
    dsuf = _state_grads(q_lin, grad, inv_n, causal, chunk_prefix, L) if has_global else placeholder
    if L.version == "v2":
        return _backward_v2_glue(grad, q_quad, k_quad, q_lin, k_lin, v, bias, scale, causal, has_local, has_global,
                                 has_bias, inv_n, state, dsuf, L)
    dv = torch.empty_like(v)
    _backward_dv[(L.programs, triton.cdiv(L.e, L.tiles.e), L.B)](
        q_quad, k_quad, k_lin, grad, dsuf, b, dv, L.T, L.C, L.s, L.e, scale,
        dsuf.stride(0), dsuf.stride(1) if causal else 0, dsuf.stride(2), sbm, sbn,
        CAUSAL=causal, HAS_LOCAL=has_local, HAS_GLOBAL=has_global, HAS_BIAS=has_bias,
        BLOCK_T=L.tiles.t, BLOCK_S=L.block_s, BLOCK_E=L.tiles.e, PRECISION=L.precision, num_warps=L.tiles.warps,
        num_stages=L.tiles.stages)
    # written in full by the kernel; empty (each its own: outputs must not alias) for an unused input
    dq_quad = torch.empty_like(q_quad) if has_local else v.new_empty(0)
    dq_lin = torch.empty_like(q_lin) if has_global else v.new_empty(0)
    dk32 = torch.zeros(q_quad.shape if has_local else (0,), device=v.device, dtype=torch.float32)  # atomics
    slots = max(1, min(L.B * L.G, BIAS_GRAD_SLOTS, BIAS_GRAD_BYTES // (4 * L.C * L.C)))
    dbias = torch.zeros((slots if has_bias else 1, L.C, L.C), device=v.device, dtype=torch.float32)
    _backward_dqk[(L.programs, L.B)](
        q_quad, k_quad, v, grad, state, inv_n, b, dq_quad, dk32, dq_lin, dbias, L.T, L.C, L.s, L.e, scale, slots,
        state.stride(0), state.stride(1) if causal else 0, state.stride(2), sbm, sbn,
        CAUSAL=causal, HAS_LOCAL=has_local, HAS_GLOBAL=has_global, HAS_BIAS=has_bias,
        BLOCK_T=L.tiles.t, BLOCK_S=L.block_s, BLOCK_E=L.tiles.e_dqk, PRECISION=L.precision,
        num_warps=L.tiles.warps, num_stages=L.tiles.stages)
    if has_global:  # dk_lin_g = v_g D_g^T (D in fp32 after a cumsum: in v's dtype, as the state is forward)
        d = dsuf.to(v.dtype).transpose(-1, -2)
        dk_lin = (torch.matmul(_chunked(v, L), d).reshape(L.B, L.G * L.C, L.s)[:, :L.T] if causal
                  else torch.matmul(v, d[:, 0]))
    else:
        dk_lin = v.new_empty(0)
    dbias = dbias.sum(dim=0) if has_bias else q_quad.new_empty(0, dtype=torch.float32)
    return dq_quad, dk32.to(k_quad.dtype), dq_lin, dk_lin.contiguous(), dv, dbias


def _backward_v2_glue(grad, q_quad, k_quad, q_lin, k_lin, v, bias, scale, causal, has_local, has_global, has_bias,
                      inv_n, state, dsuf, L: Launch):
    """_backward_v2, then the two small GEMMs it leaves to torch: dq_quad = scale dS k_quad (from the dS it
    wrote) and dq_lin = dout state_g^T / n_g; d b_rel is the sum of dS over chunks (in fp32)."""
    b, sbm, sbn = _bias_args(bias, v)
    tb = L.tiles_v2.bwd
    dsuf = dsuf.to(v.dtype)  # (fp32 after a cumsum, as the state: see _op)
    dv = torch.empty_like(v)
    dk_quad = torch.empty_like(k_quad) if has_local else v.new_empty(0)
    dk_lin = torch.empty_like(k_lin) if has_global else v.new_empty(0)
    ds = v.new_empty((L.B * L.G, L.C, L.C) if has_local else (1, 1, 1))  # dS per chunk, in the inputs' dtype
    _backward_v2[(L.programs_v2(tb.t), L.B)](
        q_quad, k_quad, k_lin, v, grad, dsuf, b, dv, dk_quad, dk_lin, ds, L.T, L.C, L.s, L.e, scale,
        dsuf.stride(0), dsuf.stride(1) if causal else 0, dsuf.stride(2), sbm, sbn,
        CAUSAL=causal, HAS_LOCAL=has_local, HAS_GLOBAL=has_global, HAS_BIAS=bias is not None and has_local,
        BLOCK_T=tb.t, BLOCK_C=L.block_c, BLOCK_S=L.block_s, BLOCK_E=tb.e, PRECISION=L.precision,
        num_warps=tb.warps, num_stages=tb.stages)
    if has_local:
        kc = _chunked(k_quad, L).reshape(L.B * L.G, L.C, L.s)
        dq_quad = torch.baddbmm(kc, ds, kc, beta=0.0, alpha=scale)  # (beta 0: the first argument is not read)
        dq_quad = dq_quad.view(L.B, L.G * L.C, L.s)[:, :L.T].contiguous()
    else:
        dq_quad = v.new_empty(0)
    if has_global:  # dq_lin = dout state_g^T / n_g
        st = state.to(v.dtype).transpose(-1, -2)
        if causal:
            dq_lin = torch.matmul(_chunked(grad, L), st) * inv_n.view(1, L.G, 1, 1).to(v.dtype)
            dq_lin = dq_lin.reshape(L.B, L.G * L.C, L.s)[:, :L.T].contiguous()
        else:
            dq_lin = torch.matmul(grad, st[:, 0]) * inv_n[0].to(v.dtype)
    else:
        dq_lin = v.new_empty(0)
    dbias = (ds.sum(dim=0, dtype=torch.float32) if has_bias
             else q_quad.new_empty(0, dtype=torch.float32))
    return dq_quad, dk_quad, dq_lin, dk_lin, dv, dbias


@_op_backward.register_fake
def _op_backward_fake(grad, q_quad, k_quad, q_lin, k_lin, v, bias, chunk, scale, causal, parts, global_norm,
                      chunk_prefix):
    C = min(chunk, v.shape[1])
    local, glob = parts != "global", parts != "local"
    dbias = (q_quad.new_empty((C, C), dtype=torch.float32) if bias is not None and local
             else q_quad.new_empty(0, dtype=torch.float32))
    return (v.new_empty(q_quad.shape if local else (0,)), v.new_empty(k_quad.shape if local else (0,)),
            v.new_empty(q_lin.shape if glob else (0,)), v.new_empty(k_lin.shape if glob else (0,)),
            v.new_empty(v.shape), dbias)


def _setup_context(ctx, inputs, output):
    q_quad, k_quad, q_lin, k_lin, v, bias, *ctx.args = inputs
    ctx.has_bias = bias is not None
    ctx.save_for_backward(q_quad, k_quad, q_lin, k_lin, v, bias)


def _backward(ctx, grad):
    q_quad, k_quad, q_lin, k_lin, v, bias = ctx.saved_tensors
    chunk, scale, causal, parts, global_norm, chunk_prefix = ctx.args
    dqq, dkq, dql, dkl, dv, dbias = _op_backward(grad, q_quad, k_quad, q_lin, k_lin, v, bias, *ctx.args)
    if parts == "local":
        dql = dkl = None
    if parts == "global":
        dqq = dkq = None
    if ctx.has_bias and parts != "global":
        C = dbias.shape[0]
        dbias = torch.nn.functional.pad(dbias, (0, bias.shape[1] - C, 0, bias.shape[0] - C)).to(bias.dtype)
    else:
        dbias = None
    return dqq, dkq, dql, dkl, dv, dbias, None, None, None, None, None, None


_op.register_autograd(_backward, setup_context=_setup_context)


def fused_mixed_chunk_attention(q_quad: torch.Tensor, k_quad: torch.Tensor, q_lin: torch.Tensor,
                                k_lin: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor], chunk: int,
                                causal: bool, parts: str = "mixed", chunk_prefix: str = "auto",
                                global_norm: str = "tokens", scale: Optional[float] = None) -> torch.Tensor:
    """chunk.mixed_chunk_attention through the Triton kernels: the same arguments and numbers (up to
    rounding). `scale` multiplies q_quad k_quad^T (default 1 / chunk). Under autocast, q, k and v are cast
    to the autocast dtype (the torch op's matmuls run in it); otherwise they must share one dtype."""
    _check(q_quad, k_quad, q_lin, k_lin, v, bias, chunk, parts, global_norm, chunk_prefix)
    if torch.is_autocast_enabled(v.device.type):
        dtype = torch.get_autocast_dtype(v.device.type)
        q_quad, k_quad, q_lin, k_lin, v = (t.to(dtype) for t in (q_quad, k_quad, q_lin, k_lin, v))
    _check_dtypes(q_quad, k_quad, q_lin, k_lin, v)
    return _op(q_quad, k_quad, q_lin, k_lin, v, bias, chunk, 1.0 / chunk if scale is None else float(scale), causal,
               parts, global_norm, chunk_prefix)


def fused_quadratic_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor],
                              norm: float, causal: bool) -> torch.Tensor:
    """quad.quadratic_attention (FLASH-Quad) through the same kernels: one chunk of T tokens, local part only,
    scores scaled by 1 / norm."""
    T = q.shape[1]
    return fused_mixed_chunk_attention(q, k, q, k, v, bias, T, causal, parts="local", scale=1.0 / norm)
