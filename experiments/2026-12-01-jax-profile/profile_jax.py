"""Where the JAX training step's time goes on the GPU, and which cheap changes close the gap to compiled PyTorch.

FLASH and Transformer++ at the quality size (--group base: the ~110M size), 2K context, 65,536 tokens per step, bf16 on float32 masters: the
cases of experiments/2026-11-30-jax/time_jax.py (its `cases` builds the RunConfigs), timed by run_jax and
suite.train.run, each in a child process (XLA_FLAGS is read when JAX's backend starts; an honest peak memory),
one lane per GPU. Per model, in PRIORITY order while --budget-s lasts:
    baseline            run_jax as the runner runs it (layers unrolled since session 8), + a jax.profiler trace
    pytorch             suite.train.run (torch.compile), + a torch.profiler trace: the reference
    embed=onehot|sorted hypothesis 1: the embedding's backward as a one-hot GEMM, or sort + segment_sum,
                        instead of XLA's scatter-add of [tokens, d] rows into [vocab, d]
    state=bf16bwd|f32   hypothesis 2 (FLASH): chunk-state GEMMs accumulated in float32 with a bf16 backward, or
                        all float32 (the form before commit b6ab97f); the baseline is the file's own form
    scan=on             hypothesis 3 (measured in session 7): the layers in jax.lax.scan, the old default
    qkv=split           session 8 (Transformer++): q, k, v as three GEMMs on the qkv weight's column blocks
    heads=f32           session 8: the GAU's heads in float32, rounded once after RoPE (commits f400ef7 to
                        18383c3, measured there as the baseline against "heads=lowp"), instead of the compute
                        dtype throughout (attention.py's gau_heads, its form before and after)
    bias=dot            hypothesis 6 (session 7): dense layers' bias gradients as a GEMM with ones, not a reduction
    xla=...             hypothesis 4: XLA flag sets (XLA_FLAG_SETS; an unknown flag aborts its child at start)
    combo               every change that beat the baseline by >= COMBO_GAIN, together (profiled too)
Each JAX row has the op counts of the lowered step (StableHLO) and of XLA's optimised module. Profiles are
summarised per step by kernel and by category for both backends (JAX: the .xplane.pb via
jax.profiler.ProfileData, the *.trace.json.gz as a fallback), with the GPU's busy time against the wall clock.

    python experiments/2026-12-01-jax-profile/profile_jax.py                 # GPU: ~8 min, writes $OUT
    python experiments/2026-12-01-jax-profile/profile_jax.py --cpu-dry-run   # every path, tiny, CPU, < 3 min
    python experiments/2026-12-01-jax-profile/profile_jax.py --hlo-only      # op counts per variant, no GPU
Writes profile_jax.md, profile_jax.json and profile_traces.tgz (the JAX traces) under --out.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("time_jax", ROOT / "experiments/2026-11-30-jax/time_jax.py")
tj = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tj)  # its cases(); it also turns JAX's GPU preallocation off (inherited by the children)

# time_jax.cases' settings (its GPU defaults), and what a CPU dry run changes: a tiny model at 2K (FLASH's 8
# chunks take the prefix-GEMM path), bf16 as on the GPU, eager PyTorch
SETTINGS = dict(groups="quality", device="cuda", precision="bf16", tokens=tj.TOKENS, size=None, vocab=None,
                context_divisor=1, torch_compile=True, warmup=3, timed=10)
DRY_RUN = dict(device="cpu", size="tiny", tokens=2048, torch_compile=False, warmup=1, timed=2)
XLA_FLAG_SETS = {
    "cublas": "--xla_gpu_enable_triton_gemm=false",  # every GEMM through cuBLAS, as PyTorch's
    "cmdbuf": "--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL",  # the layer loop inside CUDA graphs
    "sched": "--xla_gpu_enable_latency_hiding_scheduler=true --xla_gpu_enable_while_loop_double_buffering=true",
    "dsfusion": "--xla_gpu_enable_dynamic_slice_fusion=true",  # GEMMs read the scan's weight slices in place
    "cudnn-gemm": "--xla_gpu_cudnn_gemm_fusion_level=2",  # cuDNN GEMM fusions (Hopper)
    "exhaustive": "--xla_gpu_exhaustive_tiling_search=true",  # more Triton GEMM tilings autotuned
}
# variant -> knobs of its child (scan, embed, state, flags); "pytorch" is the reference
VARIANTS = {"baseline": {}, "embed=onehot": {"embed": "onehot"}, "embed=sorted": {"embed": "sorted"},
            "state=bf16bwd": {"state": "bf16bwd"}, "state=f32": {"state": "f32"}, "scan=on": {"scan": True},
            "bias=dot": {"bias": "dot"}, "heads=f32": {"heads": "f32"}, "qkv=split": {"qkv": "split"},
            # keep the matmuls' outputs and recompute the element-wise work in the backward, as Inductor's
            # min-cut partitioner does for the compiled PyTorch step (remat "none" stores every intermediate)
            "remat=dots": {"remat": "dots"}, "remat=dots_all": {"remat": "dots_all"},
            **{f"xla={k}": {"flags": [k]} for k in XLA_FLAG_SETS}}
FLASH_ONLY = ("state=bf16bwd", "state=f32", "heads=f32")
SOFTMAX_ONLY = ("qkv=split",)  # variants of the softmax attention (Transformer++ here)


def applies(model: str, variant: str) -> bool:
    """Whether a variant changes anything in this model's step."""
    return (model == "flash" or variant not in FLASH_ONLY) and (model != "flash" or variant not in SOFTMAX_ONLY)
# the order cases start in (each for every model it applies to); the combos follow in a second round
PRIORITY = ("baseline", "pytorch", "heads=f32", "qkv=split", "bias=dot", "scan=on", "embed=onehot", "remat=dots", "state=bf16bwd", "xla=cublas",
            "remat=dots_all", "xla=cmdbuf",
            "xla=sched", "embed=sorted", "state=f32", "xla=dsfusion", "xla=cudnn-gemm", "xla=exhaustive")
PROFILED = ("baseline", "pytorch", "combo")
PROFILE_STEPS = 3
TOP_KERNELS = 25
COMBO_GAIN = 0.015        # a variant joins the combination when it is at least 1.5% faster than the baseline
CASE_TIMEOUT_S = 180      # one child: start, build, compile, time, profile
COMBO_RESERVE_S = 40      # kept back for the combos' round (per model a lane must run)
STARTUP_RESERVE_S = 15    # no case starts with less than this left
TGZ_LIMIT = 15 * 2**20    # a device call brings back files of up to 16 MiB
# (category, substrings of the lower-cased kernel name), the first match wins; one table for both backends
CATEGORIES = (
    ("attention (cuDNN / flash)", ("fmha", "sdpa", "flash_fwd", "flash_bwd", "flash_attn", "attention")),
    ("GEMM (cuBLAS / cuDNN / Triton GEMM)", ("gemm", "nvjet", "cutlass", "xmma", "wgmma", "cublas", "cudnn", "dot",
                                            "splitk", "matmul", "aten::mm", "aten::bmm", "aten::addmm")),
    ("scatter / gather / sort", ("scatter", "gather", "embedding", "index", "sort", "radix", "segment")),
    ("copies / dynamic-update-slice", ("memcpy", "memset", "copy", "dynamic_update_slice", "dynamic-update-slice",
                                       "dynamic_slice", "transpose", "concatenate", "fused_cat", "pad")),
    ("reductions", ("reduce", "reduction", "triton_red", "triton_per", "cumsum", "softmax", "aten::sum", "norm")),
    ("fusions (XLA loop / Triton element-wise)", ("fusion", "triton", "loop_", "elementwise", "vectorized",
                                                  "multi_tensor", "aten::")),
)
# Triton kernels (Inductor's triton_poi/red/per/tem_fused_<ops>, XLA's triton_*) are named after the ops they fuse,
# "_to_copy" among them: sorted by kind first, element-wise fusions unless these say otherwise
TRITON_KINDS = ((CATEGORIES[1][0], ("triton_tem", "gemm", "dot")), (CATEGORIES[2][0], CATEGORIES[2][1]),
                (CATEGORIES[4][0], ("triton_red", "triton_per", "reduce", "softmax")))
DERIVED_LINES = ("XLA Ops", "XLA Modules", "Steps", "Framework", "Source", "TensorFlow", "Launch", "_counters_")


def category(name: str) -> str:
    low = name.lower()
    if low.startswith("triton_"):
        return next((kind for kind, keys in TRITON_KINDS if any(k in low for k in keys)), CATEGORIES[-1][0])
    return next((kind for kind, keys in CATEGORIES if any(k in low for k in keys)), "other")


# --------------------------------------------------------------------------- code variants (in a child only)
# Small patches of implementations.jax, made before the child builds its model; the files stay as they are.

def patch_embedding(mode: str) -> None:
    """Hypothesis 1: params["embed"][tokens] with a custom backward, "onehot" (one_hot(tokens)^T @ grad, a
    float32 GEMM at full precision) or "sorted" (argsort, then segment_sum over sorted ids), instead of XLA's
    scatter-add; the forward stays a gather. models.forward reads params["embed"] by indexing, .dtype and
    .astype (the tied head): it gets a stand-in with those three."""
    import jax
    import jax.numpy as jnp
    from implementations.jax import models as M

    @jax.custom_vjp
    def lookup(table, tokens):
        return table[tokens]

    def bwd(res, g):
        table, tokens = res
        ids, g = tokens.reshape(-1), g.reshape(-1, g.shape[-1])
        if mode == "onehot":
            d = jnp.einsum("nv,nd->vd", jax.nn.one_hot(ids, table.shape[0], dtype=g.dtype), g,
                           precision=jax.lax.Precision.HIGHEST)
        else:
            order = jnp.argsort(ids)
            d = jax.ops.segment_sum(g[order], ids[order], num_segments=table.shape[0], indices_are_sorted=True)
        return d.astype(table.dtype), None

    lookup.defvjp(lambda table, tokens: (table[tokens], (table, tokens)), bwd)

    class Table:
        def __init__(self, w):
            self.w, self.dtype = w, w.dtype

        def __getitem__(self, tokens):
            return lookup(self.w, tokens)

        def astype(self, dtype):
            return self.w.astype(dtype)

    forward = M.forward
    M.forward = lambda cfg, consts, params, tokens, **kw: forward(
        cfg, consts, {**params, "embed": Table(params["embed"])}, tokens, **kw)


def patch_bias(mode: str) -> None:
    """Hypothesis 6 (session 7's traces): a dense layer's bias gradient, the sum of its output gradient over
    tokens, as a GEMM with a vector of ones ("dot"), as PyTorch's layers.Linear computes it (NOTES entry 9),
    instead of the reduction XLA fuses into the element-wise backward (`input_add_reduce_fusion`: 7.8-8.9 ms
    per FLASH step at the quality size, 2K, 16 launches). layers.py's `dense` (and attention.py's import of
    it) get a bias addition with that backward."""
    import jax
    import jax.numpy as jnp
    from implementations.jax import attention as A, layers as L

    @jax.custom_vjp
    def add_bias(y, b):
        return y + b

    def bwd(b, g):  # (the bias itself as the residual: only its dtype is used)
        rows = g.reshape(-1, g.shape[-1])
        ones = jnp.ones((1, rows.shape[0]), rows.dtype)
        return g, jnp.dot(ones, rows, preferred_element_type=jnp.float32)[0].astype(b.dtype)

    add_bias.defvjp(lambda y, b: (y + b, b), bwd)

    def dense(p: dict, x):
        y = x @ p["w"].astype(x.dtype)
        return add_bias(y, p["b"].astype(x.dtype)) if "b" in p else y

    L.dense = A.dense = dense


def patch_heads(mode: str) -> None:
    """Session 8 ("f32"): attention.py's gau_heads computed in the parameters' precision (float32 on bf16
    compute) and rounded once to z's dtype after RoPE, as PyTorch's GAU.qkv (the file's form in commits
    f400ef7-18383c3), against the file's compute-dtype heads. Both feed the attention's GEMMs bf16 heads."""
    import jax.numpy as jnp
    from implementations.jax import attention as A

    def gau_heads(p: dict, z, rope: bool):
        heads = z[..., None, :].astype(jnp.promote_types(z.dtype, p["gamma"].dtype)) * p["gamma"] + p["beta"]
        return (A.apply_rope(heads, -3) if rope else heads).astype(z.dtype)

    A.gau_heads = gau_heads


def patch_qkv(mode: str) -> None:
    """Session 8 ("split"): attention.py's head_projections as three GEMMs on the column blocks of the one
    qkv weight, instead of one GEMM reshaped: the backward then needs no [tokens, 3 d] gradient built from
    the attention's three (the profile's `wrapped_concatenate`, 2.8 ms per Transformer++ step at the quality
    size, 2K, 2 launches per block); the weight's gradient is assembled from three [d, d] blocks instead."""
    from implementations.jax import attention as A

    def head_projections(p: dict, x, n_heads: int, rope: bool):
        B, T, d = x.shape
        w = p["qkv"]["w"].astype(x.dtype)  # [d, 3 d]: columns q, k, v, each [heads, head dim]
        q, k, v = ((x @ w[:, i * d:(i + 1) * d]).reshape(B, T, n_heads, d // n_heads) for i in range(3))
        if rope:
            q, k = A.apply_rope(q, -3), A.apply_rope(k, -3)
        return q, k, v

    A.head_projections = head_projections


STATE_SPEC, PREFIX_SPEC = "bgcs,bgce->bgse", "gh,bhse->bgse"  # attention.py's chunk-state and chunk-prefix GEMMs


def patch_state(mode: str) -> None:
    """Hypothesis 2: attention.py's two chunk-state einsums in a fixed form, whatever the file's own. "f32":
    float32 results (the state einsum with preferred_element_type=float32; the prefix accumulated in float32,
    then cast), whose backward runs float32 GEMMs on float32 copies; "bf16bwd": the same forward, with a
    backward of bf16 GEMMs on a bf16 cotangent (custom_vjp). The prefix returns its operand's dtype in both.
    attention.py gets a `jnp` whose einsum intercepts these two subscripts."""
    import jax
    import jax.numpy as jnp
    from implementations.jax import attention as A

    def f32_form(spec, a, b):
        out = jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
        return out if spec == STATE_SPEC else out.astype(b.dtype)

    def bwd(spec, res, ct):
        a, b = res
        return jax.vjp(lambda x, y: jnp.einsum(spec, x, y), a, b)[1](ct.astype(a.dtype))

    bf16_backward = jax.custom_vjp(f32_form, nondiff_argnums=(0,))
    bf16_backward.defvjp(lambda spec, a, b: (f32_form(spec, a, b), (a, b)), bwd)
    form = f32_form if mode == "f32" else bf16_backward

    class Jnp:
        def __getattr__(self, name):
            return getattr(jnp, name)

        @staticmethod
        def einsum(spec, *operands, **kw):
            return form(spec, *operands) if spec in (STATE_SPEC, PREFIX_SPEC) else jnp.einsum(spec, *operands, **kw)

    A.jnp = Jnp()


# --------------------------------------------------------------------------- evidence: op counts, traces

def stablehlo_counts(text: str) -> dict:
    """Ops of the lowered step that the hypotheses name (not the #stablehlo.scatter<...> attributes), and the
    dot_generals whose two operands are float32."""
    ops = Counter(re.findall(r"(?<!#)stablehlo\.([a-z_]+)", text))
    out = {k: ops.get(k, 0) for k in ("scatter", "gather", "dot_general", "while", "dynamic_update_slice", "sort")}
    out["dot_f32xf32"] = len(re.findall(r"dot_general[^\n]*: \(tensor<[^>]*xf32>, tensor<[^>]*xf32>\)", text))
    return out


def compiled_counts(text: str) -> dict:
    """XLA's optimised module: opcodes of interest, fusion kinds, library calls."""
    body = "\n".join(ln.split("metadata=")[0] for ln in text.splitlines() if " = " in ln)
    ops = Counter(re.findall(r"\s([a-z][a-z0-9\-]*)\(", body))
    keys = ("fusion", "scatter", "while", "dynamic-update-slice", "copy", "custom-call", "dot")
    out = {k: ops.get(k, 0) for k in keys}
    out.update({f"kind={k}": v for k, v in Counter(re.findall(r"kind=(k\w+)", text)).items()})
    return {**out, **{f"call={k}": v for k, v in Counter(re.findall(r'custom_call_target="([^"]+)"', text)).items()}}


def trace_events(trace_dir: Path) -> tuple[list, str]:
    """[(kernel, start us, duration us)] on the device's streams in a jax.profiler trace, and where they came
    from: the .xplane.pb (jax.profiler.ProfileData), else the *.trace.json.gz beside it. On the CPU (no device
    plane): XLA's thunks on the host, the events that carry an hlo_op."""
    import jax

    note = "no .xplane.pb"
    for path in sorted(trace_dir.rglob("*.xplane.pb"))[-1:]:
        try:
            planes, events, layout = list(jax.profiler.ProfileData.from_file(str(path)).planes), [], []
            for plane in planes:
                lines = list(plane.lines)
                layout.append(f"{plane.name}: {', '.join(ln.name for ln in lines[:12])}")
                if plane.name.startswith("/device:"):
                    streams = ([ln for ln in lines if ln.name.startswith("Stream")]
                               or [ln for ln in lines if not ln.name.startswith(DERIVED_LINES)])
                    events += [(e.name, e.start_ns / 1e3, e.duration_ns / 1e3) for ln in streams for e in ln.events]
            events = events or [(e.name, e.start_ns / 1e3, e.duration_ns / 1e3) for p in planes if p.name == "/host:CPU"
                                for ln in p.lines for e in ln.events if any(k == "hlo_op" for k, _ in e.stats)]
            if events:
                return events, "xplane: " + " | ".join(layout)[:600]
            note = "xplane without device events: " + " | ".join(layout)[:400]
        except Exception as exc:  # a jaxlib without ProfileData, or a file it cannot read
            note = f"xplane unreadable ({exc.__class__.__name__}: {str(exc)[:200]})"
    for path in sorted(trace_dir.rglob("*.trace.json.gz")):
        ev = json.load(gzip.open(path)).get("traceEvents", [])
        meta = [e for e in ev if e.get("ph") == "M"]
        pids = {e["pid"] for e in meta if e.get("name") == "process_name" and "/device:" in str(e["args"].get("name"))}
        tids = {(e["pid"], e["tid"]) for e in meta if e.get("name") == "thread_name" and e["pid"] in pids
                and str(e["args"].get("name")).startswith("Stream")}
        events = [(e["name"], e["ts"], e["dur"]) for e in ev if e.get("ph") == "X" and e.get("pid") in pids
                  and (not tids or (e["pid"], e["tid"]) in tids)]
        if events:
            return events, f"trace.json ({note})"
    return [], note + "; no device events in a trace.json.gz either: wall-clock numbers only"


def summarise(events: list, steps: int, wall_ms: float, source: str) -> dict:
    """Per training step: kernel time by name (largest first) and by category, the union of the kernels'
    intervals (GPU busy) and the wall clock. events: (name, start us or None, duration us[, calls])."""
    per_name = defaultdict(lambda: [0.0, 0])
    for name, _, dur, *calls in events:
        per_name[name][0] += dur
        per_name[name][1] += calls[0] if calls else 1
    cats = defaultdict(float)
    for name, (us, _) in per_name.items():
        cats[category(name)] += us / 1e3 / steps
    busy, end = 0.0, float("-inf")
    for _, start, dur, *_ in sorted(events, key=lambda e: e[1]) if all(e[1] is not None for e in events) else []:
        busy += max(0.0, start + dur - max(start, end))
        end = max(end, start + dur)
    top = sorted(per_name.items(), key=lambda kv: -kv[1][0])[:100]
    return {"source": source, "steps": steps, "wall_ms_per_step": wall_ms,
            "kernel_ms_per_step": sum(v[0] for v in per_name.values()) / 1e3 / steps,
            "busy_ms_per_step": busy / 1e3 / steps if busy else None, "kernel_names": len(per_name),
            "launches_per_step": sum(v[1] for v in per_name.values()) / steps,
            "categories": dict(sorted(cats.items(), key=lambda kv: -kv[1])),
            "top": [[n, us / 1e3 / steps, c / steps, category(n)] for n, (us, c) in top]}


# --------------------------------------------------------------------------- one measurement (child process)

def recording(module, name: str):
    """Replace module.<name>, the step class run_jax / run instantiate, by a subclass that keeps its last
    instance: the timed step, to be profiled and its compiled module read afterwards."""
    class Recorded(getattr(module, name)):
        last = None

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            Recorded.last = self

    setattr(module, name, Recorded)
    return Recorded


def timed_steps(call, sync) -> list[float]:
    """Wall-clock ms of PROFILE_STEPS calls, each waited for (`sync` of its result)."""
    walls = []
    for _ in range(PROFILE_STEPS):
        t0 = time.perf_counter()
        sync(call())
        walls.append((time.perf_counter() - t0) * 1e3)
    return walls


def profile_torch(step, x, y) -> dict:
    """A torch.profiler trace of PROFILE_STEPS steps: CUDA kernels with their intervals; on the CPU, ops' self
    time as suite/profile.py counts them (its `breakdown` by kind is kept beside ours)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from suite.profile import _self_time, breakdown

    cuda = step.device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        walls = timed_steps(lambda: step(x, y), lambda _: step.sync())
    if cuda:
        events = [(e.name, e.time_range.start, e.time_range.elapsed_us()) for e in prof.events()
                  if e.device_type == DeviceType.CUDA]
    else:
        events = [(e.key, None, _self_time(e, False), e.count) for e in prof.key_averages()
                  if e.device_type == DeviceType.CPU]
    out = summarise(events, PROFILE_STEPS, statistics.median(walls),
                    "torch.profiler: " + ("CUDA kernels" if cuda else "CPU ops, self time"))
    out["suite_profile_kinds"] = breakdown([(e[0], e[2], e[3] if len(e) > 3 else 1) for e in events], PROFILE_STEPS)
    return out


def profile_jax(step, x, y, trace_dir: Path) -> dict:
    import jax

    step(x, y).block_until_ready()
    with jax.profiler.trace(str(trace_dir)):
        walls = timed_steps(lambda: step(x, y), lambda loss: loss.block_until_ready())
    events, source = trace_events(trace_dir)
    return summarise(events, PROFILE_STEPS, statistics.median(walls), source)


def child(spec: dict) -> dict:
    import torch
    from suite.batches import random_batches
    from suite.runs import RunConfig

    cfg = RunConfig(**spec["run"])
    batch = random_batches(cfg).sample(torch.Generator().manual_seed(1))
    if spec["backend"] == "pytorch":
        import suite.train as module
        rec = recording(module, "Step")
        row, _ = module.run(cfg)
    else:
        import suite.jax_step as module
        if spec.get("embed"):
            patch_embedding(spec["embed"])
        if spec.get("state"):
            patch_state(spec["state"])
        if spec.get("bias"):
            patch_bias(spec["bias"])
        if spec.get("heads"):
            patch_heads(spec["heads"])
        if spec.get("qkv"):
            patch_qkv(spec["qkv"])
        rec = recording(module, "JaxStep")
        row, _ = module.run_jax(cfg, scan=spec.get("scan", False), remat=spec.get("remat", "auto"))
        row["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    step = rec.last
    if step is None or row.get("status") != "ok":
        return row
    x, y = step.put(batch)
    if spec["backend"] == "jax":
        try:
            lowered = step._jit_step.lower(step.params, step.opt_state, x, y, step.lr(1.0))
            row["hlo"] = stablehlo_counts(lowered.as_text())
            compiled = next(c for key, c in step._compiled.items() if key[0] == "step")
            row["hlo_compiled"] = compiled_counts(compiled.as_text())
        except Exception as exc:
            row["hlo_error"] = f"{exc.__class__.__name__}: {str(exc)[:200]}"
    if spec["profile"]:
        try:
            row["profile"] = (profile_torch(step, x, y) if spec["backend"] == "pytorch"
                              else profile_jax(step, x, y, Path(spec["trace_dir"])))
        except Exception as exc:
            row["profile_error"] = f"{exc.__class__.__name__}: {str(exc)[:300]}"
    return row


# --------------------------------------------------------------------------- the driver

def run_child(spec: dict, timeout: float, lane_env: dict) -> dict:
    """One measurement in a fresh process: XLA_FLAGS plus the case's flag sets, its lane's GPU."""
    flags = " ".join([os.environ.get("XLA_FLAGS", "")] + [XLA_FLAG_SETS[k] for k in spec.get("flags", [])]).strip()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT),
                              env={**os.environ, **lane_env, "XLA_FLAGS": flags})
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "message": f"no result within {timeout:.0f} s", "wall_s": timeout}
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
    if not rows:
        tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()][-4:]
        return {"status": "error", "message": f"exit {proc.returncode}: {' | '.join(tail)[:600]}",
                "wall_s": time.perf_counter() - t0}
    return {**json.loads(rows[-1][4:]), "wall_s": time.perf_counter() - t0}


def lanes(requested: int) -> list[dict]:
    """One environment per lane, CUDA_VISIBLE_DEVICES of one GPU each (the parent never starts CUDA itself)."""
    gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    if not gpus and shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60).stdout
        gpus = [str(i) for i, ln in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]
    return [{"CUDA_VISIBLE_DEVICES": gpus[i]} if i < len(gpus) else {} for i in range(requested or max(1, len(gpus)))]


def run_cases(cases: list[dict], lane_envs: list[dict], deadline: float, ctx: dict) -> None:
    """Run the cases in order, one per lane at a time; none starts within STARTUP_RESERVE_S of `deadline`."""
    todo, lock = list(cases), threading.Lock()

    def worker(env):
        while True:
            with lock:
                if not todo:
                    return
                case = todo.pop(0)
            left = deadline - time.perf_counter()
            if left < STARTUP_RESERVE_S:
                case["row"] = {"status": "skipped", "message": "time budget spent"}
                continue
            spec = {"backend": "pytorch" if case["variant"] == "pytorch" else "jax", "run": case["run"],
                    **case["knobs"], "profile": case["variant"] in PROFILED,
                    "trace_dir": str(ctx["traces"] / f"{case['model']}_{case['variant']}".replace("=", "-"))}
            r = case["row"] = run_child(spec, min(ctx["case_timeout"], left), env)
            print(f"[{time.perf_counter() - ctx['start']:5.0f} s] gpu={env.get('CUDA_VISIBLE_DEVICES', '-')} "
                  f"{case['model']:22s} {case['variant']:16s} {r.get('status')}: "
                  f"{r.get('step_ms_median') or float('nan'):.1f} ms {(r.get('message') or '')[:160]}", flush=True)

    threads = [threading.Thread(target=worker, args=(env,)) for env in lane_envs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def combos(cases: list[dict], runs: dict) -> list[dict]:
    """Per model: the variants at least COMBO_GAIN faster than its baseline, together (of the embedding and
    state forms the fastest only; flag sets joined); none where fewer than two qualify."""
    out = []
    for m in runs:
        ok = {c["variant"]: c["row"]["step_ms_median"] for c in cases
              if c["model"] == m and c.get("row", {}).get("status") == "ok"}
        good = sorted((ms, v) for v, ms in ok.items() if v in VARIANTS and "baseline" in ok
                      and ms <= ok["baseline"] * (1 - COMBO_GAIN))
        knobs, names = {"flags": []}, []
        for _, v in good:
            k = VARIANTS[v]
            if not any(key in knobs for key in k if key != "flags"):  # else a slower form of a knob chosen already
                knobs.update({key: val for key, val in k.items() if key != "flags"})
                knobs["flags"] += k.get("flags", [])
                names.append(v)
        if len(names) >= 2:
            out.append({"model": m, "variant": "combo", "knobs": knobs, "run": runs[m], "combo_of": names})
    return out


def archive(trace_root: Path, out: Path) -> str:
    """The JAX traces' .xplane.pb in one .tgz (the baselines' alone if all of them are too large to come back)."""
    files = sorted(trace_root.rglob("*.xplane.pb"))
    target = out / "profile_traces.tgz"
    for keep in (files, [f for f in files if "baseline" in str(f)]):
        if keep:
            with tarfile.open(target, "w:gz") as tar:
                for f in keep:
                    tar.add(f, arcname=str(f.relative_to(trace_root)))
            if target.stat().st_size <= TGZ_LIMIT:
                return f"{target.name}: {len(keep)} of {len(files)} .xplane.pb, {target.stat().st_size / 2**20:.1f} MiB"
            target.unlink()
    return f"none kept ({len(files)} .xplane.pb, {sum(f.stat().st_size for f in files) / 2**20:.0f} MiB)"


# --------------------------------------------------------------------------- report

def _n(x, fmt=".1f"):
    return format(x, fmt) if isinstance(x, (int, float)) and x == x else "-"


def markdown(cases: list[dict], note: str) -> str:
    lines = ["# JAX step profile: where the time goes", "", note, "",
             "| model | variant | ms | vs JAX baseline | / PyTorch | compile s | peak GiB | step GiB | remat | "
             "scatter | f32xf32 dots | while | DUS | XLA fusions / library calls | status |", "|" + "---|" * 15]
    models = list(dict.fromkeys(c["model"] for c in cases))
    for m in models:
        rows = {c["variant"]: c for c in cases if c["model"] == m}
        base, ref = (rows.get(v, {}).get("row", {}).get("step_ms_median") for v in ("baseline", "pytorch"))
        for v, c in rows.items():
            r = c.get("row", {})
            h, x = r.get("hlo", {}), r.get("hlo_compiled", {})
            ms = r.get("step_ms_median") if r.get("status") == "ok" else None
            gain = ms / base - 1 if ms and base and v != "pytorch" else None
            lines.append(f"| {m} | {v}{' (' + ' + '.join(c['combo_of']) + ')' if c.get('combo_of') else ''} | "
                         f"{_n(ms)} | {_n(gain, '+.1%')} | {_n(ms / ref if ms and ref else None, '.2f')} | "
                         f"{_n(r.get('compile_s'))} | {_n(r.get('peak_mem_gib'))} | {_n(r.get('step_mem_gib'))} | "
                         f"{r.get('jax_remat', '-')} | {h.get('scatter', '-')} | {h.get('dot_f32xf32', '-')} | "
                         f"{h.get('while', '-')} | {h.get('dynamic_update_slice', '-')} | {x.get('fusion', '-')} / "
                         f"{x.get('custom-call', '-')} | {r.get('status')} {(r.get('message') or '')[:100]} |")
    lines += ["", "HLO columns: ops of the lowered step (StableHLO; while: the layer scan, forward and backward; DUS: "
              "dynamic_update_slice), fusions / custom-calls of XLA's optimised module. Flag sets: "
              + "; ".join(f"xla={k}: `{v}`" for k, v in XLA_FLAG_SETS.items())]
    for m in models:
        prof = {c["variant"]: c["row"]["profile"] for c in cases if c["model"] == m and "profile" in c.get("row", {})}
        lines += [""] + [f"{m} {c['variant']}: profile failed: {c['row']['profile_error']}" for c in cases
                         if c["model"] == m and c.get("row", {}).get("profile_error")]
        if not prof:
            continue
        lines += ["", f"## {m}: kernel time per step by category (ms; {PROFILE_STEPS} profiled steps)", "",
                  "| category | " + " | ".join(prof) + " |", "|---|" + "---|" * len(prof)]
        for k in dict.fromkeys(k for p in prof.values() for k in p["categories"]):
            lines.append(f"| {k} | " + " | ".join(_n(p["categories"].get(k), ".2f") for p in prof.values()) + " |")
        for key, label in (("kernel_ms_per_step", "sum of kernels"), ("busy_ms_per_step", "GPU busy (union)"),
                           ("wall_ms_per_step", "wall (profiled)"), ("launches_per_step", "launches")):
            lines.append(f"| **{label}** | " + " | ".join(_n(p.get(key)) for p in prof.values()) + " |")
        lines += [""] + [f"- {v}: {p['source'][:300]}" for v, p in prof.items()]
        for v in [v for v in ("baseline", "pytorch") if v in prof]:
            lines += ["", f"### {m}, {v}: the {TOP_KERNELS} largest kernels", "",
                      "| ms / step | launches / step | category | kernel |", "|---|---|---|---|"]
            lines += [f"| {ms:.3f} | {n:g} | {k} | `{name[:110]}` |" for name, ms, n, k in prof[v]["top"][:TOP_KERNELS]]
    return "\n".join(lines) + "\n"


def base_runs(settings: dict) -> dict:
    """model -> RunConfig fields: time_jax.py's quality-size cases of FLASH and Transformer++ at 2K."""
    cases = tj.cases(argparse.Namespace(**settings))
    return {c["run"]["model"]: c["run"] for c in cases if c["run"]["context"] == 2048}


def git(*args) -> str:
    """git's answer, or "" where the tree has no history or the machine no git (the device's copy may lack both)."""
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def hlo_only(settings: dict) -> int:
    """Op counts of the lowered step for each code variant, here: tracing only, no compile, no GPU."""
    import jax
    import torch
    from implementations import jax as impl_jax
    from implementations.jax import attention as A, models as M
    from suite import jax_step as J
    from suite.model import build, model_config
    from suite.runs import RunConfig

    from implementations.jax import layers as L
    forward, real_jnp, real_dense, real_heads, real_projections = (M.forward, A.jnp, L.dense, A.gau_heads,
                                                                    A.head_projections)
    print("| model | variant | " + " | ".join(stablehlo_counts("")) + " |")
    for m, run in base_runs(settings).items():
        cfg = RunConfig(**run)
        mc = model_config(cfg, cfg.vocab_size)
        tm = build(mc, 0, torch.device("cpu"))
        for v in [v for v in VARIANTS if not v.startswith("xla=") and applies(m, v)]:
            M.forward, A.jnp, k = forward, real_jnp, VARIANTS[v]
            L.dense = A.dense = real_dense
            if "embed" in k:
                patch_embedding(k["embed"])
            if "state" in k:
                patch_state(k["state"])
            if "bias" in k:
                patch_bias(k["bias"])
            A.gau_heads, A.head_projections = real_heads, real_projections
            if "heads" in k:
                patch_heads(k["heads"])
            if "qkv" in k:
                patch_qkv(k["qkv"])
            apply, params = impl_jax.from_torch(tm, mc, dtype=J.COMPUTE_DTYPES[cfg.precision], scan=k.get("scan", False),
                                                remat=k.get("remat", "none"))
            step = J.JaxStep(apply, params, cfg, J.decay_mask(tm, mc), J.jax_device("cpu"))
            b = jax.ShapeDtypeStruct((cfg.batch_size, cfg.context), "int32")
            counts = stablehlo_counts(step._jit_step.lower(step.params, step.opt_state, b, b, step.lr(1.0)).as_text())
            print(f"| {m} | {v} | " + " | ".join(map(str, counts.values())) + " |", flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT", "out"))
    p.add_argument("--budget-s", type=float, default=480.0, help="start no case after this many seconds")
    p.add_argument("--case-timeout", type=float, default=CASE_TIMEOUT_S)
    p.add_argument("--lanes", type=int, default=0, help="cases at once (default: one per GPU)")
    p.add_argument("--group", default="quality", choices=("quality", "base"),
                   help="the size: quality (d 512, vocabulary 256) or base (~110M, vocabulary 32,768), 2K")
    p.add_argument("--variants", default="", help="comma-separated subset of: " + ", ".join(PRIORITY))
    p.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on the CPU: every path, quickly")
    p.add_argument("--hlo-only", action="store_true", help="print the lowered step's op counts per variant, stop")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("ROW " + json.dumps(child(json.loads(args.child)), default=str), flush=True)
        return 0
    settings = {**SETTINGS, "groups": args.group, **(DRY_RUN if args.cpu_dry_run else {})}
    if args.hlo_only:
        return hlo_only(settings)
    if args.cpu_dry_run:  # two lanes (the threads' path too), done within 3 minutes
        args.budget_s, args.case_timeout, args.lanes = min(args.budget_s, 170.0), 90.0, args.lanes or 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = base_runs(settings)
    chosen = args.variants.split(",") + ["baseline"] if args.variants else PRIORITY
    cases = [{"model": m, "variant": v, "knobs": VARIANTS.get(v, {}), "run": runs[m]}
             for v in PRIORITY if v in chosen for m in runs if applies(m, v)]
    lane_envs = lanes(args.lanes)
    ctx = {"start": start, "case_timeout": args.case_timeout, "traces": Path(tempfile.mkdtemp(prefix="profile_jax_"))}
    run_cases(cases, lane_envs, start + args.budget_s - COMBO_RESERVE_S * -(-len(runs) // len(lane_envs)), ctx)
    extra = combos(cases, runs)
    run_cases(extra, lane_envs, start + args.budget_s, ctx)
    cases += extra
    env = {"commit": os.environ.get("FLASH_REPRO_COMMIT") or git("rev-parse", "HEAD"),  # (the device's copy: no .git)
           "modified": git("status", "--porcelain", "implementations", "suite"),
           "xla_flags": os.environ.get("XLA_FLAGS", ""), "lanes": lane_envs, "xla_flag_sets": XLA_FLAG_SETS,
           "settings": settings, "wall_s": time.perf_counter() - start, "traces": archive(ctx["traces"], out)}
    shutil.rmtree(ctx["traces"], ignore_errors=True)
    first = next((c["row"] for c in cases if c.get("row", {}).get("jax_version")), {})
    note = (f"{first.get('device_name', '?')}, jax {first.get('jax_version', '?')}, commit "
            f"{env['commit'][:10] or '? (no git)'}{' (modified: ' + env['modified'] + ')' if env['modified'] else ''}; "
            f"{len(lane_envs)} lane(s); {env['wall_s']:.0f} s; traces: {env['traces']}")
    (out / "profile_jax.json").write_text(json.dumps({"args": vars(args), "env": env, "cases": cases}, indent=1,
                                                     default=str))
    table = markdown(cases, note)
    (out / "profile_jax.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
