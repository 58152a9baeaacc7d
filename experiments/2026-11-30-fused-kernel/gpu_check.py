"""Issue 12, part 1: the fused Triton kernels of FLASH's mixed chunk attention (GAU option kernel="triton",
implementations/attention/gau/triton_chunk.py) against the torch op (chunk.py) on one GPU. Kernel names:
"torch" (chunk.py), "triton" (triton_chunk's default, version 2, whose fallback for fp32 on a GPU is
version 1), "triton-v1" (triton_chunk.KERNEL_VERSION = "v1": the first version, for comparison).

1. correctness: outputs and every gradient (q_quad, k_quad, q_lin, k_lin, v, bias) of both ops in fp32 and
   bf16 against the torch op in float64, causal and bidirectional, at the quality size of the op (s 128,
   e 1024, C 256) and T 512 / 2048 / 8192 with B T = 65,536; each error is max|x - ref| / max|ref|. Also
   FLASH-Quad's op (one chunk of 2048 tokens, a [T, T] bias) through the same kernels, causal.
2. the op alone, forward + backward, bf16: torch vs triton vs triton-v1, eager and under torch.compile (a
   wrapper around the op, dynamic=False as suite/model.py compiles); median of TIMED calls after WARMUP;
   and at 2K causal the forward alone (mode "eager fwd").
3. one FLASH training step at the quality size (d 512, 8 blocks = 16 GAU layers, vocabulary 256, 65,536
   tokens, bf16 autocast, AdamW, compiled layer by layer with suite.model.compile_model), kernel torch vs
   triton at 512 / 2K / 8K causal and 2K bidirectional (triton-v1 at 2K causal only); median of TIMED
   steps after warm-up.
4. (last, budget allowing) the triton op (version 2) in bf16 at 2K causal with other tile sizes
   (triton_chunk.ChunkTiles): TILES, the first being triton_chunk's defaults.
5. profile (last, budget allowing): at 2K, causal and bidirectional, bf16, the op's forward + backward for
   triton (version 2) eager, torch compiled and torch eager: PROFILE_WARMUP calls, then torch.profiler (CPU
   and CUDA activity) over PROFILE_CALLS calls. Per kernel name: launches, device time per op call (us), mean
   per launch, share of the op's device time; the same by category (triton_chunk's kernels by function name,
   cuBLAS / cutlass GEMMs, Inductor's triton_ kernels, aten copy / reduction / elementwise, other); the sum of
   device time against the wall time per call (CUDA events, without the profiler: the difference is launch
   gaps and host work); and the triton_chunk kernels as compiled (Triton's CompiledKernel after its first
   launch: n_regs, n_spills, metadata.shared / num_warps / num_stages, checked in the sources of Triton 3.6
   and 3.9), with the blocks per SM they allow and the waves of their grid. On the CPU (the dry run) the
   profiler sees CPU activity only: CPU self times instead, with a note. Expected cost on an H200: 20-40 s
   (two recompiles of the torch op, the profiler's start-up and trace processing).
6. writes gpu_check.md (tables) and gpu_check.json (every number and every error message) to $OUT
   (default ./out).

Every case catches its own exception (recorded, the rest goes on), and once --budget-s seconds have passed
the remaining cases are skipped (recorded as such). Expected under 3 minutes on an H200 (session 6: 118 s for
sections 1-4, most of it compiling the 8 compiled model variants, plus 20-40 s for section 5); the default
budget, 270 s, is the earlier 230 s plus section 5's 40. Run from the repository root:

    python experiments/2026-11-30-fused-kernel/gpu_check.py            # on the GPU machine
    python experiments/2026-11-30-fused-kernel/gpu_check.py --cpu-dry-run   # tiny sizes, Triton's interpreter
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRY_RUN = "--cpu-dry-run" in sys.argv
if DRY_RUN:  # before triton defines any kernel (triton_chunk.INTERPRETED)
    os.environ["TRITON_INTERPRET"] = "1"
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import implementations as impl  # noqa: E402
from implementations.attention.gau import chunk as chunk_ops  # noqa: E402
from implementations.attention.gau import triton_chunk  # noqa: E402

# sizes: (s, e, chunk, lengths, tokens per call, model d / blocks / vocabulary)
GPU = dict(s=128, e=1024, chunk=256, lengths=(512, 2048, 8192), tokens=65536, d=512, blocks=8, vocab=256,
           step_cases=((2048, True), (8192, True), (512, True), (2048, False)))  # most telling first
CPU = dict(s=16, e=32, chunk=16, lengths=(32, 64), tokens=128, d=16, blocks=1, vocab=32,
           step_cases=((32, True), (64, False)))
WARMUP, TIMED = 5, 20
STEP_WARMUP, STEP_TIMED = 3, 10
BIAS_STD = 0.1  # the relative bias; q, k, v are N(0, 1)
# version 2's bf16 tiles, (forward, backward), each (BLOCK_T, BLOCK_E, warps, pipeline stages):
# triton_chunk.GPU_TILES_V2's first, then others that compile for sm_90 within its shared memory (compiled
# without a GPU: none spills but the last, whose backward spills 24 bytes)
TILES = (((64, 64, 8, 2), (64, 32, 8, 3)), ((64, 64, 8, 2), (32, 32, 8, 3)), ((64, 64, 8, 2), (64, 32, 8, 2)),
         ((32, 64, 8, 2), (64, 32, 8, 3)), ((64, 32, 8, 3), (64, 32, 8, 3)), ((64, 64, 8, 2), (32, 64, 8, 2)))
KERNELS = ("torch", "triton", "triton-v1")
TILE_T = 2048
GRAD_NAMES = ("q_quad", "k_quad", "q_lin", "k_lin", "v", "bias")


# left out of the line each case prints (the profile's tables go to gpu_check.md and .json)
PRINT_LEFT_OUT = ("traceback", "kernels", "categories", "triton_metadata", "device_limits", "note")


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> bool:
        return time.monotonic() < self.end


def run_case(results: list, budget: Budget, section: str, case: dict, fn) -> None:
    """fn() -> dict of numbers, recorded with the case; an exception or the budget recorded instead."""
    row = {"section": section, **case}
    if not budget.left():
        row["status"] = "skipped: time budget"
    else:
        try:
            row.update(fn())
            row["status"] = "ok"
        except Exception as exc:  # one case's failure must not hide the others
            row["status"] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            row["traceback"] = traceback.format_exc(limit=6)
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    print(json.dumps({k: v for k, v in row.items() if k not in PRINT_LEFT_OUT}, default=str), flush=True)
    results.append(row)


def op_inputs(B, T, cfg, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    qs = [torch.randn(B, T, cfg["s"], device=device, generator=g) for _ in range(4)]
    v = torch.randn(B, T, cfg["e"], device=device, generator=g)
    C = cfg["chunk"]
    bias = torch.randn(C, C, device=device, generator=g) * BIAS_STD
    grad = torch.randn(B, T, cfg["e"], device=device, generator=g)
    return [*qs, v, bias], grad


def op_fn(kernel: str):
    if kernel == "torch":
        return chunk_ops.mixed_chunk_attention
    version = "v1" if kernel == "triton-v1" else "v2"

    def fused(*args, **kwargs):  # the version is read when the op runs, so this holds compiled too
        saved, triton_chunk.KERNEL_VERSION = triton_chunk.KERNEL_VERSION, version
        try:
            return triton_chunk.fused_mixed_chunk_attention(*args, **kwargs)
        finally:
            triton_chunk.KERNEL_VERSION = saved
    return fused


class KernelVersion:
    """triton_chunk.KERNEL_VERSION set for a block (a whole training step: forward and backward)."""

    def __init__(self, kernel: str):
        self.version = "v1" if kernel == "triton-v1" else "v2"

    def __enter__(self):
        self.saved, triton_chunk.KERNEL_VERSION = triton_chunk.KERNEL_VERSION, self.version

    def __exit__(self, *exc):
        triton_chunk.KERNEL_VERSION = self.saved


def forward_backward(kernel, leaves, grad, dtype, C, causal):
    bias_dtype = torch.float64 if dtype == torch.float64 else torch.float32  # the model's bias is an fp32 parameter
    xs = [t.detach().to(dtype if i < 5 else bias_dtype).requires_grad_() for i, t in enumerate(leaves)]
    with KernelVersion(kernel):  # the backward reads the version too
        out = op_fn(kernel)(*xs[:5], xs[5], C, causal)
        grads = torch.autograd.grad(out, xs, grad.to(out.dtype))
    return [out.detach(), *grads]


def relative_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def check_case(T, causal, cfg, device) -> dict:
    B = cfg["tokens"] // T
    leaves, grad = op_inputs(B, T, cfg, device)
    ref = forward_backward("torch", leaves, grad, torch.float64, cfg["chunk"], causal)
    dtypes = (torch.float32,) if device.type == "cpu" else (torch.float32, torch.bfloat16)
    row = {}
    for dtype in dtypes:
        for kernel in ("torch", "triton"):
            got = forward_backward(kernel, leaves, grad, dtype, cfg["chunk"], causal)
            for name, x, r in zip(("out",) + GRAD_NAMES, got, ref):
                row[f"{kernel} {str(dtype)[6:]} {name}"] = relative_error(x, r)
    return row


def check_quad_case(T, causal, cfg, device) -> dict:
    """FLASH-Quad's op (one chunk of T tokens, scores / max_len, a [T, T] bias) through the kernels."""
    from implementations.attention.gau.quad import quadratic_attention
    B = cfg["tokens"] // T // 8 or 1  # an eighth of the tokens: the float64 reference holds B T^2 scores
    leaves, grad = op_inputs(B, T, {**cfg, "chunk": T}, device)
    q, k, v, bias = leaves[0], leaves[1], leaves[4], leaves[5]
    fns = {"torch": quadratic_attention, "triton": triton_chunk.fused_quadratic_attention}

    def run(kernel, dtype):
        xs = [t.detach().to(dtype if i < 3 else torch.float64 if dtype == torch.float64 else torch.float32)
              .requires_grad_() for i, t in enumerate((q, k, v, bias))]
        out = fns[kernel](*xs, float(T), causal)
        return [out.detach(), *torch.autograd.grad(out, xs, grad.to(out.dtype))]

    ref = run("torch", torch.float64)
    row = {}
    for dtype in ((torch.float32,) if device.type == "cpu" else (torch.float32, torch.bfloat16)):
        for kernel in ("torch", "triton"):
            for name, x, r in zip(("out", "q", "k", "v", "bias"), run(kernel, dtype), ref):
                row[f"{kernel} {str(dtype)[6:]} {name}"] = relative_error(x, r)
    return row


class Timer:
    """Median milliseconds of fn() after warm-up: CUDA events on a GPU, perf_counter on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn, warmup, timed) -> float:
        times = []
        for i in range(warmup + timed):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                ms = start.elapsed_time(end)
            else:
                t0 = time.perf_counter()
                fn()
                ms = 1000 * (time.perf_counter() - t0)
            if i >= warmup:
                times.append(ms)
        return statistics.median(times)


def op_call(T, causal, kernel, compiled, cfg, device, forward_only=False):
    """One call of the op (forward + backward, or the forward alone) on fixed inputs, as a closure."""
    B = cfg["tokens"] // T
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    leaves, grad = op_inputs(B, T, cfg, device)
    xs = [t.to(dtype if i < 5 else torch.float32).requires_grad_() for i, t in enumerate(leaves)]
    grad = grad.to(dtype)
    C, op = cfg["chunk"], op_fn(kernel)

    def attention(qq, kq, ql, kl, v, bias):
        return op(qq, kq, ql, kl, v, bias, C, causal)

    if compiled:
        torch._dynamo.reset()
        attention = torch.compile(attention, dynamic=False)

    def call():
        with KernelVersion(kernel):
            if forward_only:
                with torch.no_grad():
                    attention(*xs)
                return
            out = attention(*xs)
            out.backward(grad)
        for x in xs:
            x.grad = None

    return call


def op_time_case(T, causal, kernel, compiled, cfg, device, forward_only=False) -> dict:
    call = op_call(T, causal, kernel, compiled, cfg, device, forward_only)
    return {"ms": Timer(device)(call, WARMUP if device.type == "cuda" else 1, TIMED if device.type == "cuda" else 2)}


def tile_case(tiles, cfg, device) -> dict:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    table = triton_chunk.GPU_TILES_V2 if device.type == "cuda" else triton_chunk.__dict__
    key = dtype if device.type == "cuda" else "INTERPRETER_TILES_V2"
    saved = table[key]
    kernels = [triton_chunk.KernelTiles(*k) for k in tiles]
    if device.type != "cuda":  # the interpreter: the tests' tiles, the stages as asked
        kernels = [k._replace(t=16, e=16, warps=1) for k in kernels]
    table[key] = triton_chunk.ChunkTiles(*kernels)
    try:
        T = TILE_T if device.type == "cuda" else cfg["lengths"][-1]
        return op_time_case(T, True, "triton", False, cfg, device)
    finally:
        table[key] = saved


def compile_layers(model):
    try:
        from suite.model import compile_model
    except Exception:  # suite being edited: the same per-layer compile, as suite/model.py does it
        def compile_model(model):
            torch._dynamo.reset()
            torch._dynamo.config.fail_on_recompile_limit_hit = True
            for layer in model.layers:
                layer.compile(dynamic=False)
            return model
    return compile_model(model)


def step_case(T, causal, kernel, cfg, device) -> dict:
    torch.manual_seed(0)
    model = impl.build_model("flash", vocab_size=cfg["vocab"], d_model=cfg["d"], n_layers=cfg["blocks"], max_len=T,
                             causal=causal, kernel="torch" if kernel == "torch" else "triton").to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = compile_layers(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=cuda)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg["vocab"], (cfg["tokens"] // T, T + 1), generator=g).to(device)
    x, y = tokens[:, :-1], tokens[:, 1:]  # bidirectional: the same shapes as a masked LM's step

    def step():
        with KernelVersion(kernel):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    ms = Timer(device)(step, STEP_WARMUP if cuda else 1, STEP_TIMED if cuda else 2)
    row = {"ms": ms, "loss": step().item()}
    if cuda:
        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    return row


# ------------------------------------------------------------------------------------------ 5. profile
PROFILE_T = 2048
PROFILE_CONFIGS = (("triton", "eager"), ("torch", "compiled"), ("torch", "eager"))  # per causal, causal first
PROFILE_WARMUP, PROFILE_CALLS = 3, 5
PROFILE_TOP = 15
TRITON_CHUNK_KERNELS = ("_forward_v2", "_backward_v2", "_forward", "_backward_dv", "_backward_dqk")
_TRITON_CHUNK_NAME = re.compile(r"^(?:triton_chunk\.)?(_forward_v2|_backward_v2|_backward_dqk|_backward_dv|_forward)"
                                r"(?:_\d\w*)?$")  # (older Triton appended the signature, _0d1d2d...)
# kernel names (lower case) by category, the first match wins; GPU kernel names and, in the dry run, aten ops
CATEGORY_MARKS = (
    ("copy / memset", ("memcpy", "memset", "copy", "catarray", "aten::to", "aten::_to_copy", "aten::contiguous",
                       "aten::clone", "aten::cat", "pad")),
    ("GEMM (cuBLAS / cutlass)", ("gemm", "cutlass", "xmma", "nvjet", "cublas", "wgmma", "splitkreduce", "sm90_",
                                 "sm80_", "ampere_", "hopper_", "aten::mm", "aten::bmm", "aten::addmm",
                                 "aten::baddbmm", "aten::matmul", "aten::linear")),
    ("reduction / scan (aten)", ("reduce", "scan", "cub::", "aten::sum", "aten::cumsum", "aten::mean", "aten::amax")),
    ("elementwise (aten)", ("elementwise", "pointwise", "aten::mul", "aten::add", "aten::sub", "aten::div",
                            "aten::relu", "aten::pow", "aten::where", "aten::tril", "aten::triu", "aten::fill",
                            "aten::zero", "aten::masked", "aten::neg", "aten::reciprocal")),
)
# sm_90 (H100 / H200) per-SM limits, where torch's device properties lack them
SM90_LIMITS = dict(regs_per_multiprocessor=65536, shared_memory_per_multiprocessor=233472,
                   max_threads_per_multi_processor=2048, warp_size=32)
MAX_BLOCKS_PER_SM = 32


def kernel_category(name: str) -> str:
    m = _TRITON_CHUNK_NAME.match(name)
    if m:
        return f"triton_chunk {m.group(1)}"
    if name.startswith("triton_"):
        return "Inductor triton_ kernels"
    low = name.lower()
    for category, marks in CATEGORY_MARKS:
        if any(mark in low for mark in marks):
            return category
    return "other"


def short_kernel_name(name: str, width: int = 120) -> str:
    """A C++ kernel name without its namespaces' noise (the full name is in gpu_check.json), cut to width."""
    for noise in ("void ", "at::native::", "(anonymous namespace)::", "c10::", "std::", "at::"):
        name = name.replace(noise, "")
    return name if len(name) <= width else name[:width - 3] + "..."


class LaunchSpy:
    """Replaces triton_chunk's kernels (module globals, looked up at each launch) by proxies that record each
    launch: the kernel's name, grid and keyword arguments, and the compiled kernel Triton's launcher returns
    (CompiledKernel on a GPU; None under the interpreter). With annotate, each launch runs inside
    torch.profiler.record_function("triton_chunk.<name>"), so that the interpreter's CPU time shows up."""

    def __init__(self, annotate: bool = False):
        self.annotate, self.launches = annotate, []

    def __enter__(self):
        self.saved = {n: getattr(triton_chunk, n) for n in TRITON_CHUNK_KERNELS if hasattr(triton_chunk, n)}
        for name, fn in self.saved.items():
            setattr(triton_chunk, name, _KernelProxy(name, fn, self))
        return self

    def __exit__(self, *exc):
        for name, fn in self.saved.items():
            setattr(triton_chunk, name, fn)


class _KernelProxy:
    def __init__(self, name, fn, spy: LaunchSpy):
        self.name, self.fn, self.spy = name, fn, spy

    def __getitem__(self, grid):
        launcher = self.fn[grid]

        def launch(*args, **kwargs):
            if self.spy.annotate:
                with torch.profiler.record_function(f"triton_chunk.{self.name}"):
                    compiled = launcher(*args, **kwargs)
            else:
                compiled = launcher(*args, **kwargs)
            self.spy.launches.append((self.name, tuple(grid), kwargs, compiled))
            return compiled
        return launch


def device_limits(device) -> dict:
    if device.type != "cuda":
        return {}
    props = torch.cuda.get_device_properties(device)
    limits = {k: getattr(props, k, None) or v for k, v in SM90_LIMITS.items()}
    limits["sms"] = props.multi_processor_count
    limits["from torch"] = [k for k in SM90_LIMITS if getattr(props, k, None)]
    return limits


def kernel_metadata(name, grid, kwargs, compiled, limits) -> dict:
    """What one launch of a triton_chunk kernel compiled to: Triton's CompiledKernel (3.x, checked against the
    sources of 3.6 and 3.9) has n_regs, n_spills, n_max_threads (set when the binary is loaded, at the first
    launch) and metadata (a namedtuple of the compile options and results: num_warps, num_stages, num_ctas,
    maxnreg, shared bytes); every attribute read with a guard. Occupancy: CUDA's rules (registers allocated per
    warp in units of 256, i.e. 8 per thread; 1 KiB of shared memory reserved per block), an estimate."""
    row = {"kernel": name, "grid": list(grid), "programs": 1,
           "constexprs": {k: v for k, v in kwargs.items() if isinstance(v, (bool, int, str)) and not k.startswith("num_")}}
    for g in grid:
        row["programs"] *= int(g)
    for k in ("num_warps", "num_stages"):
        if k in kwargs:
            row[k] = kwargs[k]
    if compiled is None or not hasattr(compiled, "metadata"):
        row["note"] = "no compiled kernel (Triton's interpreter)" if DRY_RUN else "Triton returned no CompiledKernel"
        return row
    meta = compiled.metadata
    for k in ("name", "num_warps", "num_stages", "num_ctas", "maxnreg", "shared"):
        if getattr(meta, k, None) is not None:
            row[k] = getattr(meta, k)
    for k in ("n_regs", "n_spills", "n_max_threads"):
        if getattr(compiled, k, None) is not None:
            row[k] = getattr(compiled, k)
    if "n_spills" in row:  # Triton's n_spills: CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES / 4 (local memory per thread)
        row["local_bytes_per_thread"] = 4 * row["n_spills"]
    warps, regs, shared = row.get("num_warps"), row.get("n_regs"), row.get("shared")
    if limits and warps and regs is not None and shared is not None:
        warp_size = limits["warp_size"]
        per_warp = -(-max(regs, 1) * warp_size // 256) * 256
        by_regs = limits["regs_per_multiprocessor"] // per_warp // warps
        by_shared = limits["shared_memory_per_multiprocessor"] // (shared + 1024)
        by_threads = limits["max_threads_per_multi_processor"] // (warps * warp_size)
        blocks = min(by_regs, by_shared, by_threads, MAX_BLOCKS_PER_SM)
        row["blocks_per_sm"] = {"registers": by_regs, "shared": by_shared, "threads": by_threads, "min": blocks}
        row["occupancy_warps"] = f"{blocks * warps} / {limits['max_threads_per_multi_processor'] // warp_size}"
        if blocks:
            row["waves"] = row["programs"] / (limits["sms"] * blocks)
    return row


def profile_case(T, causal, kernel, mode, cfg, device) -> dict:
    """The op's forward + backward under torch.profiler: per kernel its launches, device time per op call and
    share; by category; the sum of device time against the wall time per call (the difference: launch gaps).
    On the CPU (the dry run) the profiler sees CPU activity only: self CPU time of each aten op and of each
    interpreted triton_chunk kernel (record_function around its launch) instead of device time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    cuda = device.type == "cuda"
    call = op_call(T, causal, kernel, mode == "compiled", cfg, device)
    warmup, calls = (PROFILE_WARMUP, PROFILE_CALLS) if cuda else (1, 2)  # (as profile_tables says)
    with LaunchSpy() as spy:  # the warm-up (and compile): which triton_chunk kernels launch, compiled to what
        for _ in range(warmup):
            call()
    if cuda:
        torch.cuda.synchronize()
    wall_ms = Timer(device)(call, 0, calls)  # as section 2 measures, without the profiler
    limits = device_limits(device)
    seen, metadata = set(), []
    for name, grid, kwargs, compiled in spy.launches:
        key = (name, grid, id(compiled) if compiled is not None else None)
        if key not in seen:
            seen.add(key)
            metadata.append(kernel_metadata(name, grid, kwargs, compiled, limits))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with LaunchSpy(annotate=not cuda):
        with torch.profiler.profile(activities=activities) as prof:
            t0 = time.perf_counter()
            for _ in range(calls):
                call()
            if cuda:
                torch.cuda.synchronize()
            profiled_wall_us = 1e6 * (time.perf_counter() - t0) / calls
    events = list(prof.events())
    launch_api = [e for e in events if e.device_type == DeviceType.CPU
                  and e.name.lstrip("_").startswith(("cudaLaunch", "cuLaunch"))]
    if cuda:  # kernels, memcpy and memset on the device; not the GPU-side copies of user annotations
        on_device = [e for e in events if e.device_type != DeviceType.CPU and not getattr(e, "is_user_annotation", False)
                     and "annotation" not in str(getattr(e, "activity_type", "")).lower()]
        timed = [(e.name, e.time_range.elapsed_us()) for e in on_device]
    else:
        on_device = []
        timed = [(e.name, e.self_cpu_time_total) for e in events if e.device_type == DeviceType.CPU]
    per_name = {}
    for name, us in timed:
        k = per_name.setdefault(name, {"launches": 0, "us": 0.0})
        k["launches"] += 1
        k["us"] += us
    total = sum(k["us"] for k in per_name.values()) or 1e-30
    kernels = sorted(({"name": name, "category": kernel_category(name), "launches_per_call": k["launches"] / calls,
                       "us_per_call": k["us"] / calls, "us_per_launch": k["us"] / k["launches"],
                       "share": k["us"] / total} for name, k in per_name.items()), key=lambda r: -r["us_per_call"])
    categories = {}
    for r in kernels:
        c = categories.setdefault(r["category"], {"category": r["category"], "kernels": 0, "launches_per_call": 0.0,
                                                  "us_per_call": 0.0, "share": 0.0})
        c["kernels"] += 1
        for k in ("launches_per_call", "us_per_call", "share"):
            c[k] += r[k]
    busy_us = total / calls
    row = {"time": "device (CUDA kernels, memcpy, memset)" if cuda else "CPU self time (the profiler sees no device)",
           "calls": calls, "busy_us_per_call": busy_us, "wall_us_per_call": 1000 * wall_ms,
           "idle_share": max(0.0, 1 - busy_us / (1000 * wall_ms)), "profiled_wall_us_per_call": profiled_wall_us,
           "launches_per_call": sum(r["launches_per_call"] for r in kernels),
           "launch_api_calls_per_call": len(launch_api) / calls,
           "launch_api_us_per_call": sum(e.self_cpu_time_total for e in launch_api) / calls,
           "categories": sorted(categories.values(), key=lambda c: -c["us_per_call"]), "kernels": kernels,
           "triton_metadata": metadata, "device_limits": limits}
    if on_device:
        row["device_span_us_per_call"] = (max(e.time_range.end for e in on_device)
                                          - min(e.time_range.start for e in on_device)) / calls
    if cuda and not on_device:
        row["note"] = "the profiler recorded no device activity (CUPTI unavailable?): the device times are empty"
    if not cuda:
        row["note"] = ("CPU dry run: torch.profiler records CPU activity only, so every time here is CPU self time "
                       "(aten ops; the interpreted triton_chunk kernels through record_function) and 'busy' is "
                       "their sum, not device time; the compiled mode runs Inductor's C++ kernels")
    return row


def profile_tables(rows: list) -> list[str]:
    if not rows:
        return []
    ok = [r for r in rows if r["status"] == "ok"]
    calls, warmup = (PROFILE_CALLS, PROFILE_WARMUP) if not DRY_RUN else (2, 1)
    lines = [f"## 5. profile: the op forward + backward at T {rows[0]['T']}, {'fp32' if DRY_RUN else 'bf16'}, "
             f"{calls} calls under torch.profiler after {warmup} warm-up calls "
             f"({'CPU self time: no device in the dry run' if DRY_RUN else 'device time'})", ""]
    if any("note" in r for r in ok):
        lines += [f"**Note:** {next(r['note'] for r in ok if 'note' in r)}", ""]
    if DRY_RUN:
        lines += ["busy: the sum of the ops' CPU self times per call (the interpreted kernels included); wall: "
                  "perf_counter around one call without the profiler (median); idle = 1 - busy / wall (Python "
                  "outside any op); profiled wall: the same under the profiler; launches: profiler events per call.", ""]
    else:
        lines += ["busy: the sum of the device's kernel (and memcpy / memset) times per call; wall: CUDA events "
                  "around one call without the profiler (median, as section 2); idle = 1 - busy / wall (launch gaps, "
                  "host work); span: first kernel start to last kernel end under the profiler, per call; launch API: "
                  "cudaLaunch* / cuLaunch* calls seen on the CPU and their CPU time.", ""]
    lines += ["| causal | kernel | mode | busy us | wall us | idle | profiled wall us | span us | launches | "
              "launch API calls (CPU us) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['causal']} | {r['kernel']} | {r['mode']} |"
        if r["status"] != "ok":
            lines.append(f"{head} {r['status']} | | | | | | |")
            continue
        span = f"{r['device_span_us_per_call']:.0f}" if "device_span_us_per_call" in r else ""
        lines.append(f"{head} {r['busy_us_per_call']:.0f} | {r['wall_us_per_call']:.0f} | {r['idle_share']:.0%} | "
                     f"{r['profiled_wall_us_per_call']:.0f} | {span} | {r['launches_per_call']:.0f} | "
                     f"{r['launch_api_calls_per_call']:.0f} ({r['launch_api_us_per_call']:.0f}) |")
    lines.append("")
    for r in ok:
        lines += [f"### {r['T']} {'causal' if r['causal'] else 'bidirectional'}, {r['kernel']} {r['mode']}", "",
                  "| category | kernels | launches / call | us / call | share |", "|---|---|---|---|---|"]
        lines += [f"| {c['category']} | {c['kernels']} | {c['launches_per_call']:.1f} | {c['us_per_call']:.1f} | "
                  f"{c['share']:.1%} |" for c in r["categories"]]
        lines += ["", f"top {PROFILE_TOP} of {len(r['kernels'])}:", "",
                  "| kernel | category | launches / call | us / call | us / launch | share |", "|---|---|---|---|---|---|"]
        for k in r["kernels"][:PROFILE_TOP]:
            name = short_kernel_name(k["name"]).replace("|", "\\|")
            lines.append(f"| `{name}` | {k['category']} | {k['launches_per_call']:.1f} | {k['us_per_call']:.1f} | "
                         f"{k['us_per_launch']:.1f} | {k['share']:.1%} |")
        lines.append("")
    meta = [(r, m) for r in ok for m in r["triton_metadata"]]
    if meta:
        lines += ["### triton_chunk kernels as compiled", "",
                  "Triton's CompiledKernel after its first launch: n_regs (registers per thread), n_spills (local "
                  "memory per thread in 4-byte words: spills), metadata.shared (bytes of shared memory per block), "
                  "num_warps, num_stages. Blocks per SM: the least of what registers, shared memory and threads "
                  "allow (CUDA's occupancy rules, an estimate); waves: programs / (SMs x blocks per SM).", "",
                  "| causal | kernel | grid | constexprs | warps | stages | regs | spills | shared KiB | "
                  "blocks / SM (regs, smem, threads) | warps / SM | waves |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r, m in meta:
            consts = ", ".join(f"{k}={v}" for k, v in m["constexprs"].items() if k.startswith(("BLOCK", "CAUSAL")))
            b = m.get("blocks_per_sm")
            blocks = f"{b['min']} ({b['registers']}, {b['shared']}, {b['threads']})" if b else m.get("note", "")
            shared = f"{m['shared'] / 1024:.0f}" if "shared" in m else ""
            waves = f"{m['waves']:.2f}" if "waves" in m else ""
            lines.append(f"| {r['causal']} | {m['kernel']} | {'x'.join(map(str, m['grid']))} | {consts} | "
                         f"{m.get('num_warps', '')} | {m.get('num_stages', '')} | {m.get('n_regs', '')} | "
                         f"{m.get('n_spills', '')} | {shared} | {blocks} | {m.get('occupancy_warps', '')} | {waves} |")
        lines.append("")
    return lines


def check_table(checks: list, title: str) -> list[str]:
    if not checks:
        return []
    lines = [f"## {title}", "", "bf16 \"triton\" is version 2; fp32 on a GPU takes version 1 (version 2 is for "
             "16-bit dtypes).", "", "| T | causal | dtype | tensor | torch | triton |", "|---|---|---|---|---|---|"]
    for r in checks:
        if r["status"] != "ok":
            lines.append(f"| {r['T']} | {r['causal']} | | | {r['status']} | |")
            continue
        for key, a in r.items():
            if key.startswith("torch "):
                _, dt, name = key.split(" ", 2)
                b = r[f"triton {dt} {name}"]
                lines.append(f"| {r['T']} | {r['causal']} | {dt} | {name} | {a:.2e} | {b:.2e} |")
    return lines + [""]


def markdown(results: list, cfg: dict) -> str:
    lines = [f"# gpu_check ({'CPU dry run, Triton interpreter' if DRY_RUN else torch.cuda.get_device_name()})", "",
             f"torch {torch.__version__}, triton {triton_chunk.triton.__version__}; "
             f"op sizes s {cfg['s']}, e {cfg['e']}, "
             f"chunk {cfg['chunk']}, {cfg['tokens']} tokens per call", ""]
    for section, title in (("check", "1. errors relative to the float64 torch op (max |x - ref| / max |ref|)"),
                           ("check quad", "1b. FLASH-Quad's op (one chunk of T), the same errors")):
        lines += check_table([r for r in results if r["section"] == section], title)
    for section, title in (("op", "2. the op alone, forward + backward (ms, median)"),
                           ("step", "3. one FLASH training step (ms, median)")):
        rows = [r for r in results if r["section"] == section]
        if not rows:
            continue
        lines += [f"## {title}", "",
                  "| T | causal | mode | torch | triton (v2) | triton-v1 | torch / v2 | torch / v1 |",
                  "|---|---|---|---|---|---|---|---|"]
        groups = {}
        for r in rows:
            groups.setdefault((r["T"], r["causal"], r.get("mode", "compiled")), {})[r["kernel"]] = r
        for (T, causal, mode), by in groups.items():
            def cell(k):
                r = by.get(k)
                return f"{r['ms']:.3f}" if r and r["status"] == "ok" else (r["status"] if r else "")
            def ratio(k):
                ok = all(by.get(x, {}).get("status") == "ok" for x in ("torch", k))
                return f"{by['torch']['ms'] / by[k]['ms']:.2f}x" if ok else ""
            lines.append(f"| {T} | {causal} | {mode} | {cell('torch')} | {cell('triton')} | {cell('triton-v1')} | "
                         f"{ratio('triton')} | {ratio('triton-v1')} |")
        lines.append("")
    tiles = [r for r in results if r["section"] == "tiles"]
    if tiles:
        lines += [f"## 4. the triton op (version 2), {tiles[0]['T']} causal, eager, by tile sizes (ms, median)", "",
                  "| forward (BLOCK_T, BLOCK_E, warps, stages) | backward (the same) | ms |", "|---|---|---|"]
        for r in tiles:
            fwd, bwd = (", ".join(map(str, k)) for k in r["tiles"])
            lines.append(f"| {fwd} | {bwd} | {format(r['ms'], '.3f') if r['status'] == 'ok' else r['status']} |")
        lines.append("")
    lines += profile_tables([r for r in results if r["section"] == "profile"])
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on the CPU through Triton's interpreter")
    p.add_argument("--budget-s", type=float, default=270.0, help="skip the cases left after this many seconds")
    p.add_argument("--skip", nargs="*", default=[], choices=["check", "op", "step", "tiles", "profile"],
                   help="sections to leave out")
    args = p.parse_args()
    cfg = CPU if args.cpu_dry_run else GPU
    device = torch.device("cpu" if args.cpu_dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU: run with --cpu-dry-run for the interpreter", file=sys.stderr)
        return 2
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    budget, results = Budget(args.budget_s), []
    t0 = time.monotonic()
    if "check" not in args.skip:
        for T in cfg["lengths"]:
            for causal in (True, False):
                run_case(results, budget, "check", {"T": T, "causal": causal},
                         lambda: check_case(T, causal, cfg, device))
        T = cfg["lengths"][1]
        run_case(results, budget, "check quad", {"T": T, "causal": True},
                 lambda: check_quad_case(T, True, cfg, device))
    if "op" not in args.skip:
        for T in cfg["lengths"]:
            modes = ((True, "eager"), (False, "eager"), (True, "compiled"))
            if T == cfg["lengths"][1]:
                modes += ((True, "eager fwd"),)
            for causal, mode in modes:
                if mode == "compiled" and device.type == "cpu":
                    continue  # Inductor on the CPU would time the C++ compiler, not the kernels
                for kernel in KERNELS:
                    run_case(results, budget, "op", {"T": T, "causal": causal, "mode": mode, "kernel": kernel},
                             lambda: op_time_case(T, causal, kernel, mode == "compiled", cfg, device,
                                                  forward_only=mode == "eager fwd"))
    if "step" not in args.skip:
        for i, (T, causal) in enumerate(cfg["step_cases"]):
            for kernel in KERNELS if i == 0 else KERNELS[:2]:  # version 1 at the first (most telling) case only
                run_case(results, budget, "step", {"T": T, "causal": causal, "kernel": kernel,
                                                   "mode": "compiled" if device.type == "cuda" else "eager"},
                         lambda: step_case(T, causal, kernel, cfg, device))
    if "tiles" not in args.skip:
        for tiles in TILES:
            run_case(results, budget, "tiles", {"T": TILE_T if device.type == "cuda" else cfg["lengths"][-1],
                                                "tiles": tiles}, lambda: tile_case(tiles, cfg, device))
    if "profile" not in args.skip:
        T = PROFILE_T if device.type == "cuda" else cfg["lengths"][-1]
        for causal in (True, False):
            for kernel, mode in PROFILE_CONFIGS:
                run_case(results, budget, "profile", {"T": T, "causal": causal, "kernel": kernel, "mode": mode},
                         lambda: profile_case(T, causal, kernel, mode, cfg, device))
    report = {"device": "cpu (interpreter)" if args.cpu_dry_run else torch.cuda.get_device_name(),
              "torch": torch.__version__, "triton": triton_chunk.triton.__version__, "sizes": cfg,
              "wall_s": time.monotonic() - t0, "results": results}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(results, cfg) + f"\nwall time {report['wall_s']:.0f} s\n")
    print(f"wrote {out / 'gpu_check.md'} and {out / 'gpu_check.json'} in {report['wall_s']:.0f} s")
    failed = [r for r in results if r["status"].startswith("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
