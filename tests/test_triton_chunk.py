"""The Triton kernels of mixed chunk attention (attention/gau/triton_chunk.py) against the dense T x T
reference (naive.py) and the torch op (chunk.py), forward and backward, run on the CPU by Triton's
interpreter; and the GAU's `kernel` option (build-time refusals, layer and model equal to kernel="torch").

Triton picks interpreter or compiler when a kernel is defined, from TRITON_INTERPRET: the kernel module is
imported here with TRITON_INTERPRET=1 and the variable is restored at once, so no other test module sees it.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os

import pytest
import torch

pytest.importorskip("triton", reason="the Triton kernels need the triton package (pip install triton)")

import implementations as impl  # noqa: E402
from implementations.attention.gau import GAU, layer as gau_layer  # noqa: E402
from implementations.attention.gau.chunk import mixed_chunk_attention  # noqa: E402
from implementations.attention.gau.naive import dense_mixed_chunk_matrix  # noqa: E402
from implementations.attention.gau.quad import quadratic_attention  # noqa: E402


def _import_interpreted():
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        return importlib.import_module("implementations.attention.gau.triton_chunk")
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old


tc = _import_interpreted()
if not tc.INTERPRETED:
    pytest.skip("the Triton kernels were imported earlier in this process without TRITON_INTERPRET=1",
                allow_module_level=True)

pytestmark = pytest.mark.usefixtures("float32_default", "one_thread")

B, S, E = 2, 16, 32  # s and e: one and two tiles of the interpreter's 16 columns
HALF_SLACK = 1e-3  # about one rounding of fp16 (2^-10)
TOL = 2e-5  # fp32 kernels against a float64 reference: max error relative to the reference's largest entry


def assert_near(got: torch.Tensor, ref: torch.Tensor, what: str, tol: float = TOL) -> None:
    scale = ref.abs().max().item()
    err = (got.double() - ref.double()).abs().max().item()
    assert err <= tol * scale if scale > 0 else err == 0, f"{what}: max error {err:.3g} at scale {scale:.3g}"


def leaves(T: int, C: int, seed: int = 0) -> list[torch.Tensor]:
    """q_quad, k_quad, q_lin, k_lin [B, T, S], v [B, T, E] and a Toeplitz bias vector (2C - 1), fp32."""
    g = torch.Generator().manual_seed(seed)
    qs = [torch.randn(B, T, S, generator=g) for _ in range(4)]
    return [*qs, torch.randn(B, T, E, generator=g), torch.randn(2 * C - 1, generator=g)]


def toeplitz(w: torch.Tensor, C: int) -> torch.Tensor:
    idx = torch.arange(C)
    return w[idx[None, :] - idx[:, None] + C - 1]


def outputs_and_grads(fn, tensors, dtype, with_bias=True):
    """fn(q_quad, k_quad, q_lin, k_lin, v, bias_vector) on fresh leaves of `dtype`, and the gradients of
    sum(out * w) for a fixed random w with respect to every leaf."""
    xs = [t.detach().to(dtype).requires_grad_() for t in tensors]
    out = fn(*xs)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    grads = torch.autograd.grad((out * w).sum(), xs if with_bias else xs[:5], allow_unused=True)
    return out, grads


NAMES = ("out", "d q_quad", "d k_quad", "d q_lin", "d k_lin", "d v", "d bias")


def check_against_references(T, C, causal, parts="mixed", global_norm="tokens", chunk_prefix="auto"):
    tensors = leaves(T, C)

    def fused(qq, kq, ql, kl, v, w):
        return tc.fused_mixed_chunk_attention(qq, kq, ql, kl, v, toeplitz(w, C), C, causal, parts,
                                              chunk_prefix=chunk_prefix, global_norm=global_norm)

    def chunked(qq, kq, ql, kl, v, w):
        return mixed_chunk_attention(qq, kq, ql, kl, v, toeplitz(w, C), C, causal, parts, chunk_prefix=chunk_prefix,
                                     global_norm=global_norm)

    def dense(qq, kq, ql, kl, v, w):
        return dense_mixed_chunk_matrix(qq, kq, ql, kl, lambda i, j: w[j - i + C - 1], C, causal, parts,
                                        global_norm) @ v

    out, grads = outputs_and_grads(fused, tensors, torch.float32)
    ref, ref_grads = outputs_and_grads(dense, tensors, torch.float64)
    torch_out, torch_grads = outputs_and_grads(chunked, tensors, torch.float32)
    for name, got, want, other in zip(NAMES, (out, *grads), (ref, *ref_grads), (torch_out, *torch_grads)):
        if want is None:  # a leaf the part does not use (e.g. q_lin for "local")
            assert got is None or not got.any(), f"{name}: nonzero gradient of an unused input"
            continue
        assert_near(got, want, f"{name} against the dense reference")
        assert_near(got, other, f"{name} against the torch op")


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T,C", [(64, 32), (45, 16), (20, 32)])  # 2 chunks of 2 tiles; last chunk short; T < C
def test_kernels_equal_dense_reference_and_torch_op(T, C, causal):
    check_against_references(T, C, causal)


def test_chunks_up_to_the_limit_take_version_2_longer_ones_version_1():
    """Version 2 (the whole chunk in one tile) below INTERPRETER_V2_MAX_OPERAND, version 1 above it or when
    KERNEL_VERSION says so; on a GPU, 16-bit dtypes only (fp32 would not fit its shared memory)."""
    q, v = torch.zeros(1, 40, S), torch.zeros(1, 40, E)
    assert tc._launch(q, v, 32).version == "v2" and tc._launch(q, v, 32).block_c == 32
    assert tc._launch(q, v, 37).version == "v1"  # C 37: BLOCK_C 64, over the interpreter's limit at s 16
    assert tc.GPU_TILES_V2.keys() == {torch.bfloat16, torch.float16}


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T,C", [(64, 32), (45, 16)])
def test_version_1_still_equals_dense_reference(T, C, causal, monkeypatch):
    """KERNEL_VERSION "v1" (selectable, and the fallback of long chunks) on chunks version 2 would take."""
    monkeypatch.setattr(tc, "KERNEL_VERSION", "v1")
    assert tc._launch(torch.zeros(1, T, S), torch.zeros(1, T, E), C).version == "v1"
    check_against_references(T, C, causal)


@pytest.mark.parametrize("parts,global_norm,chunk_prefix,causal", [
    ("local", "tokens", "auto", True), ("local", "tokens", "auto", False),
    ("global", "tokens", "auto", True), ("global", "tokens", "auto", False),
    ("mixed", "chunk", "cumsum", True), ("mixed", "none", "matmul", True), ("mixed", "none", "auto", False)])
def test_every_option_is_supported(parts, global_norm, chunk_prefix, causal):
    check_against_references(40, 16, causal, parts, global_norm, chunk_prefix)


def test_many_chunks_take_the_matmul_prefix_and_suffix():
    """From PREFIX_MATMUL_MIN_CHUNKS chunks on "auto" sums states (forward) and their gradients (backward)
    by triangular GEMMs; the suffix sum of the backward is checked against its definition too."""
    check_against_references(9 * 8, 8, True)
    x = torch.randn(2, 9, 3, 4, dtype=torch.float64)
    exact = torch.stack([x[:, g + 1:].sum(dim=1) for g in range(9)], dim=1)  # the last chunk sees nothing
    for how in ("cumsum", "matmul", "auto"):
        torch.testing.assert_close(tc.exclusive_chunk_suffix(x, how), exact)


@pytest.mark.parametrize("causal", [True, False])
def test_half_precision_is_as_accurate_as_the_torch_op(causal):
    """fp16 in, fp32 accumulation: every error against float64 within twice the torch op's own in fp16 plus
    one fp16 rounding (HALF_SLACK: sums such as the Toeplitz bias's gradient over a diagonal add up the inputs'
    rounding in another order than the torch op). fp16 stands in for the GPU's bf16, which Triton's interpreter
    gets wrong in tl.dot; the casts are the same. 3 chunks: the states' fp32 cumsum meets fp16 tensors in the
    backward."""
    T, C = 40, 16
    tensors = leaves(T, C)

    def fused(qq, kq, ql, kl, v, w):
        return tc.fused_mixed_chunk_attention(qq, kq, ql, kl, v, toeplitz(w.float(), C), C, causal)

    def chunked(qq, kq, ql, kl, v, w):
        return mixed_chunk_attention(qq, kq, ql, kl, v, toeplitz(w, C), C, causal)

    out, grads = outputs_and_grads(fused, tensors, torch.float16)
    ref, ref_grads = outputs_and_grads(chunked, tensors, torch.float64)
    half, half_grads = outputs_and_grads(chunked, tensors, torch.float16)
    assert out.dtype == torch.float16
    for name, got, want, other in zip(NAMES, (out, *grads), (ref, *ref_grads), (half, *half_grads)):
        scale = want.abs().max().item()
        torch_err = (other.double() - want).abs().max().item() / scale
        err = (got.double() - want).abs().max().item() / scale
        assert err <= 2 * torch_err + HALF_SLACK, f"{name}: relative error {err:.2e}, the torch op's {torch_err:.2e}"
    with torch.autocast("cpu", dtype=torch.float16):  # fp32 inputs cast to the autocast dtype, as matmuls are
        auto = tc.fused_mixed_chunk_attention(*tensors[:5], toeplitz(tensors[5].half().float(), C), C, causal)
    torch.testing.assert_close(auto, out.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("causal", [True, False])
def test_no_bias(causal):
    tensors = leaves(40, 16)[:5]
    out, grads = outputs_and_grads(lambda *xs: tc.fused_mixed_chunk_attention(*xs, None, 16, causal), tensors,
                                   torch.float32, with_bias=False)
    ref, ref_grads = outputs_and_grads(lambda *xs: mixed_chunk_attention(*xs, None, 16, causal), tensors,
                                       torch.float64, with_bias=False)
    for name, got, want in zip(NAMES, (out, *grads), (ref, *ref_grads)):
        assert_near(got, want, name)


@pytest.mark.parametrize("causal", [True, False])
def test_flash_quad_is_one_chunk_of_the_kernel(causal):
    """FLASH-Quad's quadratic attention (norm max_len > T, bias over max_len positions) through the kernels."""
    T, max_len = 37, 48
    tensors = leaves(T, max_len)
    q, k, v, w = tensors[0], tensors[1], tensors[4], tensors[5]

    def run(fn, dtype):
        return outputs_and_grads(lambda q, k, v, w: fn(q, k, v, toeplitz(w, max_len)[:T, :T], float(max_len), causal),
                                 [q, k, v, w], dtype)

    out, grads = run(tc.fused_quadratic_attention, torch.float32)
    ref, ref_grads = run(quadratic_attention, torch.float64)
    for name, got, want in zip(("out", "d q", "d k", "d v", "d bias"), (out, *grads), (ref, *ref_grads)):
        assert_near(got, want, name)


def test_custom_op_passes_opcheck():
    """torch.library.opcheck: the schema, the fake (shape) implementation, the autograd registration."""
    T, C = 40, 16
    qq, kq, ql, kl, v, w = (t.requires_grad_() for t in leaves(T, C))
    bias = toeplitz(w, C).detach().requires_grad_()
    torch.library.opcheck(torch.ops.flash_repro.mixed_chunk_attention.default,
                          (qq, kq, ql, kl, v, bias, C, 1.0 / C, True, "mixed", "tokens", "auto"))


@pytest.mark.parametrize("attention", ["mixed_chunk", "quad"])
def test_compiled_gau_layer_is_one_graph_with_the_same_numbers(attention):
    """A GAU layer with kernel="triton" compiled as suite/model.py compiles (Inductor, static shapes) and
    fullgraph=True: no graph break around the op, and the eager layer's outputs and input gradients."""
    torch.manual_seed(0)
    layer = GAU(16, expansion=2, s=16, causal=True, max_len=40, attention=attention, chunk=16, kernel="triton")
    x = torch.randn(2, 40, 16, requires_grad=True)
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, dynamic=False)
    out, eager = compiled(x), layer(x)
    assert_near(out, eager, "compiled output", tol=1e-5)
    w = torch.randn_like(out)
    assert_near(torch.autograd.grad((out * w).sum(), x)[0], torch.autograd.grad((eager * w).sum(), x)[0],
                "compiled input gradient", tol=1e-5)
    torch._dynamo.reset()


@pytest.mark.parametrize("name,causal", [("flash", True), ("flash_quad", False)])
def test_model_with_triton_kernel_equals_torch_kernel(name, causal):
    """A whole model: kernel="triton" gives kernel="torch"'s logits and parameter gradients."""
    models = {}
    extra = {"chunk": 16} if name == "flash" else {}  # 3 chunks of 16 (the last one short) at T 40
    for kernel in ("torch", "triton"):
        torch.manual_seed(0)
        models[kernel] = impl.build_model(name, vocab_size=20, d_model=16, n_layers=1, max_len=48, causal=causal, s=16,
                                          kernel=kernel, **extra)
    with torch.no_grad():  # move every parameter off its initial value, identically in both
        for a, b in zip(models["torch"].parameters(), models["triton"].parameters()):
            a.add_(torch.randn_like(a) * 0.3)
            b.copy_(a)
    tokens = torch.randint(0, 20, (2, 40), generator=torch.Generator().manual_seed(0))
    logits = {k: m(tokens) for k, m in models.items()}
    assert_near(logits["triton"], logits["torch"], "logits", tol=1e-4)
    grads = {k: torch.autograd.grad(logits[k].square().mean(), list(m.parameters())) for k, m in models.items()}
    names = [n for n, _ in models["torch"].named_parameters()]
    for n, a, b in zip(names, grads["triton"], grads["torch"]):
        assert_near(a, b, f"gradient of {n}", tol=1e-3)
    assert all(layer.fn.kernel == "triton" for layer in models["triton"].layers)


def test_bad_kernel_values_are_refused_before_building():
    with pytest.raises(ValueError, match="model option kernel='cuda' .* valid values: torch, triton"):
        impl.make_config("flash", vocab_size=10, d_model=8, n_layers=1, max_len=8, kernel="cuda")
    with pytest.raises(ValueError, match="GAU kernel 'cuda'; valid: torch, triton"):
        GAU(8, expansion=2, s=4, causal=True, max_len=8, attention="mixed_chunk", kernel="cuda")


def test_triton_where_it_cannot_run_is_refused_in_one_line(monkeypatch):
    # no GPU and kernels compiled for one (not interpreted): refused by the registry and by the layer
    monkeypatch.setattr(tc, "INTERPRETED", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("flash", "flash_quad"):
        with pytest.raises(ValueError, match="model option kernel='triton' .*: needs a CUDA GPU, or Triton's CPU "
                                             "interpreter \\(TRITON_INTERPRET=1"):
            impl.make_config(name, vocab_size=10, d_model=8, n_layers=1, max_len=8, kernel="triton")
    with pytest.raises(ValueError, match="GAU kernel='triton' needs a CUDA GPU"):
        GAU(8, expansion=2, s=4, causal=True, max_len=8, attention="mixed_chunk", kernel="triton")
    # the op itself, on CPU tensors
    qs = leaves(20, 8)
    with pytest.raises(RuntimeError, match="kernel='triton' cannot run on cpu tensors"):
        tc.fused_mixed_chunk_attention(*qs[:5], None, 8, True)
    # triton not installed
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else find_spec(name, *a))
    assert gau_layer.kernel_problem("triton").startswith("needs the Python package triton")
    with pytest.raises(ValueError, match="model option kernel='triton' .*: needs the Python package triton, which is "
                                         "not installed \\(pip install triton\\)"):
        impl.make_config("flash", vocab_size=10, d_model=8, n_layers=1, max_len=8, kernel="triton")
    assert gau_layer.kernel_problem("torch") == ""  # the default never needs triton


def test_kernel_refuses_float64_and_mismatched_dtypes():
    qs = leaves(20, 8)
    with pytest.raises(ValueError, match="one dtype among"):
        tc.fused_mixed_chunk_attention(*(t.double() for t in qs[:5]), None, 8, True)
    with pytest.raises(ValueError, match="one dtype among"):
        tc.fused_mixed_chunk_attention(*qs[:4], qs[4].half(), None, 8, True)


# Compiles the kernels (bf16, every feature on, causal and bidirectional, the quality size's tiles) for an
# H200 (sm_90) through Triton's whole pipeline down to the cubin, without a GPU: what the interpreter cannot
# check (tl.dot's dtypes and shapes, layouts, shared memory). Run in a fresh process, without the interpreter.
COMPILE_FOR_H200 = r"""
import json, sys
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from implementations.attention.gau import triton_chunk as tc

FP32_POINTERS = {"STATE", "INV_N", "BIAS", "DSUF", "DK32", "DBIAS"}
POINTERS = FP32_POINTERS | {"QQ", "KQ", "QL", "KL", "V", "OUT", "DO", "DV", "DQQ", "DQL", "DKQ", "DKL", "DS"}
tiles, v2 = tc.GPU_TILES[torch.bfloat16], tc.GPU_TILES_V2[torch.bfloat16]
shared = {}
for causal in (True, False):
    for fn, block_t, block_e, warps, stages in (
            (tc._forward, tiles.t, tiles.e, tiles.warps, tiles.stages),
            (tc._backward_dv, tiles.t, tiles.e, tiles.warps, tiles.stages),
            (tc._backward_dqk, tiles.t, tiles.e_dqk, tiles.warps, tiles.stages),
            (tc._forward_v2, *v2.fwd), (tc._backward_v2, *v2.bwd)):
        constexprs = dict(CAUSAL=causal, HAS_LOCAL=True, HAS_GLOBAL=True, HAS_BIAS=True, BLOCK_T=block_t,
                          BLOCK_S=128, BLOCK_E=block_e, PRECISION="tf32")
        if "BLOCK_C" in fn.arg_names:  # version 2: the quality size's chunk, 256, as one tile
            constexprs["BLOCK_C"] = 256
        fp32 = FP32_POINTERS - {"STATE", "DSUF"} if "BLOCK_C" in constexprs else FP32_POINTERS  # v2: cast first
        signature = {a: "constexpr" if a in constexprs else ("*fp32" if a in fp32 else "*bf16")
                     if a in POINTERS else "fp32" if a == "scale" else "i32" for a in fn.arg_names}
        # as the JIT specialises them at the quality size: pointers and sizes divisible by 16
        attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(fn.arg_names)
                 if signature[a] != "constexpr" and a not in ("scale", "slots")}
        kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=GPUTarget("cuda", 90, 32),
                                options={"num_warps": warps, "num_stages": stages})
        shared[f"{fn.__name__} causal={causal}"] = kernel.metadata.shared
print(json.dumps(shared))
"""
H200_SHARED_BYTES = 227 * 1024  # the most shared memory one block may use on an H100 / H200


def test_kernels_compile_for_an_h200_within_its_shared_memory():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", COMPILE_FOR_H200], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    shared = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(shared) == 10
    for name, size in shared.items():
        assert 0 < size <= H200_SHARED_BYTES, f"{name}: {size} bytes of shared memory"
