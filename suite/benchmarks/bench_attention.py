"""Microbenchmarks of each attention layer, forward and forward + backward, over context lengths.

Run (from the repository root; not part of the default `python -m pytest`, which collects `tests/` only,
and files named bench_*.py are collected only when their path is given):

    python -m pytest suite/benchmarks/bench_attention.py --benchmark-enable [--benchmark-json=FILE]

Without `--benchmark-enable` (pytest.ini's addopts disable pytest-benchmark) every case runs once,
untimed: a smoke test of the same code.

Layers, each built bare (no residual, norm or FFN), causal, at width d, with RoPE:
  sdpa          MultiHeadAttention, kernel "sdpa" (attention/softmax.py), d // 64 heads
  materialized  MultiHeadAttention, kernel "materialized" (the T x T matrix in memory)
  favor         FavorAttention (models/performer.py): 256 features, causal chunk 64
  combiner      CombinerAttention (models/combiner.py): block = default_block(T) (the model's at max_len T)
  gau_quad      GAU, attention "quad" (attention/gau/): e = 2d, s = 128, max_len = T
  gau_mixed     GAU, attention "mixed_chunk": e = 2d, s = 128, chunk 256
Modes: "fwd" (under torch.no_grad) and "fwd+bwd" (forward, then backward of a fixed random output
gradient into the parameters and the input).

Sizes: a fixed number of tokens per call, batch = max(1, tokens // T).
                 d     contexts                      tokens per call   dtype
  CPU            256   256, 1024, 4096               8,192             float32
  CUDA           768   512, 2048, 8192, 32768        65,536            bf16 autocast (float32 weights)
Environment overrides:
  FLASH_REPRO_BENCH_CONTEXTS   comma list of context lengths, e.g. "512,2048"
  FLASH_REPRO_BENCH_D          model width (a multiple of 64)
  FLASH_REPRO_BENCH_TOKENS     tokens per call
  FLASH_REPRO_BENCH_MEM_GB     the memory cap for quadratic layers (GiB; default: CPU 0.25,
                               CUDA 1/8 of the device's memory)
  FLASH_REPRO_BENCH_SECONDS    timed seconds to aim for per case (default: CPU 1, CUDA 2)
  FLASH_REPRO_BENCH_COMPILE    1: torch.compile each layer (static shapes) before timing it; the check call
                               then also compiles, and a warm call sets the number of rounds
Quadratic-memory layers (materialized, gau_quad) are skipped when T * T * batch * heads * bytes (the
one score matrix; the real peak of fwd+bwd is a few times larger) exceeds the cap. SDPA is not: its
fused kernels never hold the T x T matrix. With the CPU defaults this skips "materialized" at T = 4096
(0.5 GiB). The CPU defaults (8K tokens per call, this cap) keep the whole run to about 150 s of CPU
time on 2 cores (3.5 min wall measured on 2 cores shared with another job; FLASH_REPRO_BENCH_TOKENS=4096
roughly halves it).

Timing: one untimed call checks that the output (and, for fwd+bwd, every gradient) is finite, so a
broken layer fails instead of reporting a time; it is also the warm-up. The number of rounds is
FLASH_REPRO_BENCH_SECONDS / the time of one call, clamped to [2, 20] on CPU, [5, 200] on CUDA (the time
of one more untimed call, unless the check call alone shows that the minimum applies); then
benchmark.pedantic times single calls. On CUDA each call ends with torch.cuda.synchronize, so the
times are real.

Correctness gate (the fla-org habit): `test_gau_mixed_chunk_matches_reference` checks that the
mixed_chunk GAU's fast forward (and its parameter gradients) equal its dense `reference_forward` on a
small float64 input on the benchmark device; the GAU cases call pytest.fail rather than time a layer
that fails it.

extra_info per case: layer, mode, T, batch, tokens, d, heads, device, dtype, flops_fwd_per_token
(projections + attention, the convention of implementations/flops.py: causal attention counted as
half of T x T, also for "materialized", which computes the masked half too), flops_per_call (x3 for
fwd+bwd) and tflops_median (flops_per_call / median time).
"""
from __future__ import annotations

import contextlib
import functools
import gc
import math
import os
import platform
import time

import pytest
import torch

from implementations.attention.gau import GAU
from implementations.attention.softmax import MultiHeadAttention
from implementations.flops import attention_pair, dense
from implementations.models.combiner import CombinerAttention, combiner_attention_flops, default_block
from implementations.models.gau_family import gau_flops
from implementations.models.performer import FavorAttention, favor_flops_per_token
from implementations.registry import make_config
from suite.timing import is_oom
from suite.model import compile_model

# ----------------------------------------------------------------------------- configuration

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_CUDA = DEVICE.type == "cuda"


def _env_number(name: str, default, kind=int):
    """A positive number from the environment variable `name` (`kind` int or float), else `default`."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _env_contexts(default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get("FLASH_REPRO_BENCH_CONTEXTS", "").strip()
    if not raw:
        return default
    try:
        values = tuple(int(v) for v in raw.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"FLASH_REPRO_BENCH_CONTEXTS must be a comma list of integers, got {raw!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"FLASH_REPRO_BENCH_CONTEXTS must list positive integers, got {raw!r}")
    return values


D = _env_number("FLASH_REPRO_BENCH_D", 768 if ON_CUDA else 256)
CONTEXTS = _env_contexts((512, 2048, 8192, 32768) if ON_CUDA else (256, 1024, 4096))
TOKENS = _env_number("FLASH_REPRO_BENCH_TOKENS", 65536 if ON_CUDA else 8192)
if ON_CUDA:
    _default_cap_gb = torch.cuda.get_device_properties(DEVICE).total_memory / 8 / 2**30
else:
    _default_cap_gb = 0.25
MEM_CAP_BYTES = _env_number("FLASH_REPRO_BENCH_MEM_GB", _default_cap_gb, float) * 2**30
TARGET_SECONDS = _env_number("FLASH_REPRO_BENCH_SECONDS", 2.0 if ON_CUDA else 1.0, float)
MIN_ROUNDS, MAX_ROUNDS = (5, 200) if ON_CUDA else (2, 20)
COMPILE = os.environ.get("FLASH_REPRO_BENCH_COMPILE", "").strip() not in ("", "0")
DTYPE_NAME = "bfloat16 (autocast)" if ON_CUDA else "float32"
ELEMENT_BYTES = 2 if ON_CUDA else 4

if D % 64:
    raise ValueError(f"FLASH_REPRO_BENCH_D must be a multiple of 64 (heads of 64), got {D}")
HEADS = D // 64

GAU_S, GAU_EXPANSION, GAU_CHUNK = 128, 2, 256
FAVOR_FEATURES, FAVOR_CHUNK = 256, 64

# layer -> GAU keyword arguments; an implementation choice under measurement gets its own entry here
# (as the chunk-prefix and bias-gradient choices did, results/NOTES.md entry 11)
GAU_MIXED = {"gau_mixed": {}}
LAYERS = ("sdpa", "materialized", "favor", "combiner", "gau_quad", *GAU_MIXED)
MODES = ("fwd", "fwd+bwd")
QUADRATIC_HEADS = {"materialized": HEADS, "gau_quad": 1}  # layers holding T x T scores per head
GAU_LAYERS = ("gau_quad", *GAU_MIXED)


def device_name() -> str:
    if ON_CUDA:
        return torch.cuda.get_device_name(DEVICE)
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def batch_for(T: int) -> int:
    return max(1, TOKENS // T)


def quadratic_bytes(layer: str, T: int) -> int | None:
    """T * T * batch * heads * bytes for the layers that hold the score matrix, else None."""
    heads = QUADRATIC_HEADS.get(layer)
    return None if heads is None else T * T * batch_for(T) * heads * ELEMENT_BYTES


# ----------------------------------------------------------------------------- layers and FLOPs

def build_layer(layer: str, T: int) -> torch.nn.Module:
    if layer in ("sdpa", "materialized"):
        return MultiHeadAttention(D, HEADS, causal=True, rope=True, kernel=layer)
    if layer == "favor":
        return FavorAttention(D, HEADS, causal=True, n_features=FAVOR_FEATURES, chunk=FAVOR_CHUNK, rope=True)
    if layer == "combiner":
        return CombinerAttention(D, HEADS, causal=True, block=default_block(T), rope=True)
    if layer == "gau_quad":
        return GAU(D, expansion=GAU_EXPANSION, s=GAU_S, causal=True, max_len=T, attention="quad")
    if layer in GAU_MIXED:
        return GAU(D, expansion=GAU_EXPANSION, s=GAU_S, causal=True, max_len=T, attention="mixed_chunk",
                   chunk=GAU_CHUNK, **GAU_MIXED[layer])
    raise ValueError(f"unknown layer {layer!r}")


def forward_flops_per_token(layer: str, T: int) -> float:
    """One layer's forward FLOPs per token (matmuls only, causal attention halved: flops.py)."""
    projections = dense(D, 3 * D) + dense(D, D)
    if layer in ("sdpa", "materialized"):
        return projections + attention_pair(T, D, D, causal=True)
    if layer == "favor":
        cfg = make_config("performer", vocab_size=1, d_model=D, n_layers=1, max_len=T, n_heads=HEADS,
                          n_features=FAVOR_FEATURES, causal_chunk=FAVOR_CHUNK)
        return projections + favor_flops_per_token(cfg, T)
    if layer == "combiner":
        cfg = make_config("combiner", vocab_size=1, d_model=D, n_layers=1, max_len=T, n_heads=HEADS,
                          block=default_block(T))
        return projections + combiner_attention_flops(cfg, T)
    name, attention, extra = (("flash_quad", "quad", {}) if layer == "gau_quad"
                              else ("flash", "mixed_chunk", {"chunk": GAU_CHUNK}))
    cfg = make_config(name, vocab_size=1, d_model=D, n_layers=1, max_len=T, s=GAU_S, expansion=GAU_EXPANSION,
                      **extra)
    f = gau_flops(cfg, T, attention)
    return (f["projections"] + f["attention"]) / (2 * cfg.n_layers)  # one GAU of the 2 per block


# ----------------------------------------------------------------------------- the correctness gate

@functools.lru_cache(maxsize=len(GAU_MIXED))
def gau_gate(layer_name: str = "gau_mixed") -> str | None:
    """None when the mixed_chunk GAU's fast path (with the layer's implementation choices) equals its
    dense reference (float64), else why not."""
    try:
        g = torch.Generator().manual_seed(0)
        layer = GAU(16, expansion=2, s=8, causal=True, max_len=40, attention="mixed_chunk", chunk=8,
                    **GAU_MIXED.get(layer_name, {}))
        layer = layer.to(DEVICE, torch.float64)
        with torch.no_grad():  # move away from the init (zero biases) so every term matters
            for p in layer.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(DEVICE))
        x = torch.randn(2, 29, 16, generator=g, dtype=torch.float64).to(DEVICE)  # 29: a padded last chunk
        fast, ref = layer(x), layer.reference_forward(x)
        if not torch.allclose(fast, ref, rtol=1e-10, atol=1e-10):
            return f"forward differs from reference_forward: max |diff| {(fast - ref).abs().max().item():.3e}"
        w = torch.randn(fast.shape, generator=g, dtype=torch.float64).to(DEVICE)
        params = [p for p in layer.parameters()]
        g_fast = torch.autograd.grad((fast * w).sum(), params)
        g_ref = torch.autograd.grad((ref * w).sum(), params)
        for (name, _), a, b in zip(layer.named_parameters(), g_fast, g_ref):
            if not torch.allclose(a, b, rtol=1e-10, atol=1e-10):
                return f"gradient of {name} differs from the reference: max |diff| {(a - b).abs().max().item():.3e}"
    except Exception as exc:  # noqa: BLE001: any failure of the gate is a failed gate
        return f"gate raised {type(exc).__name__}: {exc}"
    return None


@pytest.mark.parametrize("layer", list(GAU_MIXED))
def test_gau_mixed_chunk_matches_reference(layer):
    problem = gau_gate(layer)
    assert problem is None, (f"{layer} ({GAU_MIXED[layer] or 'default'}) fast path vs reference_forward "
                             f"(float64, {DEVICE.type}): {problem}")


# ----------------------------------------------------------------------------- the benchmarks

def _synchronize() -> None:
    if ON_CUDA:
        torch.cuda.synchronize(DEVICE)


def _autocast():
    return torch.autocast("cuda", dtype=torch.bfloat16) if ON_CUDA else contextlib.nullcontext()


def _nonfinite(tensors: dict[str, torch.Tensor | None]) -> list[str]:
    return [name for name, t in tensors.items() if t is not None and not bool(torch.isfinite(t).all())]


@pytest.fixture(autouse=True)
def _release_memory():
    yield
    gc.collect()
    if ON_CUDA:
        torch.cuda.empty_cache()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("T", CONTEXTS, ids=lambda T: f"T{T}")
@pytest.mark.parametrize("layer", LAYERS)
def test_attention(benchmark, layer, T, mode):
    batch = batch_for(T)
    need = quadratic_bytes(layer, T)
    if need is not None and need > MEM_CAP_BYTES:
        pytest.skip(f"{layer} at T={T}: the T x T scores need ~{need / 2**30:.2f} GiB "
                    f"(T*T*batch {batch}*heads {QUADRATIC_HEADS[layer]}*{ELEMENT_BYTES} B), over the cap of "
                    f"{MEM_CAP_BYTES / 2**30:.2f} GiB (FLASH_REPRO_BENCH_MEM_GB)")
    if layer in GAU_LAYERS:
        problem = gau_gate(layer if layer in GAU_MIXED else "gau_mixed")
        if problem is not None:
            pytest.fail(f"refusing to time {layer}: the GAU mixed_chunk correctness gate failed: {problem}")

    torch.manual_seed(0)
    module = build_layer(layer, T).to(DEVICE)
    if COMPILE:  # as the runner compiles: static shapes, a fresh Dynamo state per case
        module = compile_model(module)
    x = torch.randn(batch, T, D, device=DEVICE, requires_grad=(mode == "fwd+bwd"))
    grad_out: list[torch.Tensor] = []  # filled by the check call, in the output's dtype

    if mode == "fwd":
        def step():
            with torch.no_grad(), _autocast():
                out = module(x)
            _synchronize()
            return out
    else:
        def step():
            module.zero_grad(set_to_none=True)
            x.grad = None
            with _autocast():
                out = module(x)
            if not grad_out:
                grad_out.append(torch.randn_like(out))
            out.backward(grad_out[0])
            _synchronize()
            return out

    # the check call (also the warm-up): a broken layer fails here, before any timing
    t0 = time.perf_counter()
    try:
        out = step()
        check_seconds = time.perf_counter() - t0
    except Exception as exc:
        if is_oom(exc):
            pytest.skip(f"{layer} at T={T}, batch {batch}: out of memory on {device_name()} ({exc.__class__.__name__})")
        raise
    bad = _nonfinite({"output": out})
    if mode == "fwd+bwd":
        if x.grad is None:
            bad.append("input gradient (missing)")
        bad += _nonfinite({"input gradient": x.grad,
                           **{f"grad {n}": p.grad for n, p in module.named_parameters()}})
    if bad:
        pytest.fail(f"{layer} at T={T} ({mode}): non-finite {', '.join(bad)}; not timed")
    del out

    flops_token = forward_flops_per_token(layer, T)
    flops_call = (3.0 if mode == "fwd+bwd" else 1.0) * flops_token * batch * T
    benchmark.group = f"T={T} {mode}"
    benchmark.extra_info.update({
        "layer": layer, "mode": mode, "T": T, "batch": batch, "tokens": batch * T, "d": D,
        "heads": 1 if layer in GAU_LAYERS else HEADS, "device": device_name(), "dtype": DTYPE_NAME,
        "torch": torch.__version__, "flops_fwd_per_token": flops_token, "flops_per_call": flops_call,
        "compiled": COMPILE,
    })
    if layer == "combiner":
        benchmark.extra_info["block"] = default_block(T)
    if layer in GAU_MIXED:
        benchmark.extra_info.update(chunk=GAU_CHUNK, **GAU_MIXED[layer])

    rounds = 1
    if not benchmark.disabled:
        elapsed = check_seconds  # the first call is no faster than a warm one
        if COMPILE or elapsed * MIN_ROUNDS < TARGET_SECONDS:  # more than the minimum may fit (or the check
            # call compiled): time a warm call
            t0 = time.perf_counter()
            step()
            elapsed = time.perf_counter() - t0
        rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, math.ceil(TARGET_SECONDS / max(elapsed, 1e-6)))))
    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=0)

    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None and stats.median > 0:
        benchmark.extra_info["tflops_median"] = flops_call / stats.median / 1e12
