"""GAU and mixed chunk attention: the chunked fast path against the dense T x T reference."""
from __future__ import annotations

import pytest
import torch

import implementations as impl
from implementations.attention.gau import GAU, RelativePositionBias
from implementations.attention.gau import chunk as chunk_ops
from implementations.attention.gau.chunk import PREFIX_MATMUL_MIN_CHUNKS, exclusive_chunk_prefix, mixed_chunk_attention
from implementations.attention.gau.naive import dense_mixed_chunk_matrix
from implementations.attention.gau.quad import quadratic_attention

pytestmark = pytest.mark.usefixtures("float64_default")


def inputs(B=2, T=37, s=6, e=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    qs = [torch.randn(B, T, s, generator=g, requires_grad=True) for _ in range(4)]
    v = torch.randn(B, T, e, generator=g, requires_grad=True)
    return qs, v


def grads(out, tensors):
    w = torch.randn_like(out)
    return torch.autograd.grad((out * w).sum(), tensors), w


@pytest.mark.parametrize("prefix,global_norm", [("auto", "tokens"), ("cumsum", "tokens"), ("matmul", "tokens"),
                                                ("auto", "chunk"), ("auto", "none")])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T,C", [(32, 8), (37, 8), (37, 16), (5, 8), (64, 64), (50, 1)])
def test_chunked_equals_dense_reference_outputs_and_gradients(causal, T, C, prefix, global_norm):
    qs, v = inputs(T=T)
    bias_w = torch.randn(2 * C - 1, requires_grad=True)
    idx = torch.arange(C)
    bias = bias_w[idx[None, :] - idx[:, None] + C - 1]
    fast = mixed_chunk_attention(*qs, v, bias, C, causal, chunk_prefix=prefix, global_norm=global_norm)
    dense = dense_mixed_chunk_matrix(*qs, lambda i, j: bias_w[j - i + C - 1], C, causal,
                                     global_norm=global_norm) @ v
    torch.testing.assert_close(fast, dense, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(fast)
    leaves = [*qs, v, bias_w]
    g_fast = torch.autograd.grad((fast * w).sum(), leaves)
    g_dense = torch.autograd.grad((dense * w).sum(), leaves)
    for a, b in zip(g_fast, g_dense):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("parts", ["local", "global"])
def test_ablation_parts_equal_their_dense_reference(causal, parts):
    qs, v = inputs(T=37)
    bias_w = torch.randn(15)
    idx = torch.arange(8)
    bias = bias_w[idx[None, :] - idx[:, None] + 7]
    fast = mixed_chunk_attention(*qs, v, bias, 8, causal, parts)
    dense = dense_mixed_chunk_matrix(*qs, lambda i, j: bias_w[j - i + 7], 8, causal, parts) @ v
    torch.testing.assert_close(fast, dense, rtol=1e-10, atol=1e-10)
    mixed = mixed_chunk_attention(*qs, v, bias, 8, causal)
    other = mixed_chunk_attention(*qs, v, bias, 8, causal, "global" if parts == "local" else "local")
    torch.testing.assert_close(fast + other, mixed)  # the two parts add up to the mixed attention


def test_one_chunk_equals_quadratic_attention_normalised_by_T():
    """FLASH with C = T is FLASH-Quad (causal: the global part is empty) when both divide by T."""
    qs, v = inputs(T=24)
    bias = torch.randn(24, 24)
    flash = mixed_chunk_attention(*qs, v, bias, 24, causal=True)
    quad = quadratic_attention(qs[0], qs[1], v, bias, 24.0, causal=True)
    torch.testing.assert_close(flash, quad)
    # bidirectional: the same once the global (linear) part is switched off
    zero = torch.zeros_like(qs[2])
    flash = mixed_chunk_attention(qs[0], qs[1], zero, zero, v, bias, 24, causal=False)
    torch.testing.assert_close(flash, quadratic_attention(qs[0], qs[1], v, bias, 24.0, causal=False))


def test_causal_global_part_uses_earlier_chunks_only():
    qs, v = inputs(T=32)
    out = mixed_chunk_attention(*qs, v, None, 8, causal=True)
    v2 = v.detach().clone()
    v2[:, 16:] += 1.0
    out2 = mixed_chunk_attention(*qs, v2, None, 8, causal=True)
    torch.testing.assert_close(out[:, :16], out2[:, :16])


def assert_layer_equals_its_dense_reference(layer: GAU, T: int) -> None:
    """With every parameter moved off its initial value, the layer's fast path equals its dense T x T
    reference in outputs and in every parameter's gradient."""
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.randn(2, T, 16)
    fast, ref = layer(x), layer.reference_forward(x)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(fast)
    params = list(layer.parameters())
    for a, b in zip(torch.autograd.grad((fast * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("form", ["toeplitz", "rope"])
@pytest.mark.parametrize("attention,causal", [("quad", True), ("quad", False), ("mixed_chunk", True),
                                              ("mixed_chunk", False)])
def test_gau_layer_equals_its_dense_reference(attention, causal, form):
    torch.manual_seed(0)
    layer = GAU(16, expansion=2, s=8, causal=causal, max_len=40, attention=attention, chunk=8, rel_pos_form=form)
    assert_layer_equals_its_dense_reference(layer, T=29)


def test_paper_length_normaliser_makes_outputs_depend_on_total_length():
    """The pitfall the default avoids: with /T, a prefix's outputs change when tokens are appended."""
    outs = {}
    for quad_norm in ("length", "max_len"):
        torch.manual_seed(0)
        model = impl.build_model("flash_quad", vocab_size=20, d_model=16, n_layers=1, max_len=32,
                                 quad_norm=quad_norm, s=8).double()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        tokens = torch.randint(0, 20, (1, 32))
        outs[quad_norm] = (model(tokens[:, :16]) - model(tokens)[:, :16]).abs().max().item()
    assert outs["max_len"] < 1e-10 < outs["length"]


def test_flash_accepts_any_length_and_bf16_state_is_finite():
    model = impl.build_model("flash", vocab_size=50, d_model=32, n_layers=1, max_len=1000, chunk=64).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randint(0, 50, (2, 999)))
    assert out.shape == (2, 999, 50) and torch.isfinite(out.float()).all()


def test_bad_gau_options_are_refused():
    with pytest.raises(ValueError, match="quad_norm"):
        impl.build_model("flash_quad", vocab_size=10, d_model=8, n_layers=1, max_len=8, quad_norm="sqrt")
    with pytest.raises(ValueError, match="parts"):
        impl.build_model("flash", vocab_size=10, d_model=8, n_layers=1, max_len=8, parts="both")
    with pytest.raises(ValueError, match="chunk=0 .* must be a positive integer"):
        impl.build_model("flash", vocab_size=10, d_model=8, n_layers=1, max_len=8, chunk=0)
    with pytest.raises(ValueError, match="chunk size"):  # the layer checks too
        GAU(8, expansion=2, s=4, causal=True, max_len=8, attention="mixed_chunk", chunk=0)


def test_chunk_prefix_ways_agree_in_bf16_and_unknown_ways_are_refused():
    g = torch.Generator().manual_seed(0)
    kv = torch.randn(3, 9, 4, 5, generator=g, dtype=torch.float64)
    exact = torch.stack([kv[:, :i].sum(dim=1) for i in range(9)], dim=1)  # chunk 0 sees nothing
    torch.testing.assert_close(exclusive_chunk_prefix(kv, "cumsum"), exact)
    torch.testing.assert_close(exclusive_chunk_prefix(kv, "matmul"), exact)
    low = kv.to(torch.bfloat16)
    a, b = exclusive_chunk_prefix(low, "cumsum"), exclusive_chunk_prefix(low, "matmul")
    assert a.dtype == torch.float32 and b.dtype == torch.bfloat16
    torch.testing.assert_close(b.float(), a, rtol=1e-2, atol=2e-2)  # one bf16 rounding of the same sums
    with pytest.raises(ValueError, match="chunk prefix"):
        exclusive_chunk_prefix(kv, "scan")
    # "auto": the GEMM (kv's dtype) from PREFIX_MATMUL_MIN_CHUNKS chunks on, the float32 cumsum below
    few = low[:, :PREFIX_MATMUL_MIN_CHUNKS - 1]
    assert exclusive_chunk_prefix(few).dtype == torch.float32
    assert exclusive_chunk_prefix(low[:, :PREFIX_MATMUL_MIN_CHUNKS]).dtype == torch.bfloat16
    torch.testing.assert_close(exclusive_chunk_prefix(few), exclusive_chunk_prefix(few, "cumsum"), rtol=0, atol=0)



@pytest.mark.parametrize("chunk_prefix", ["auto", "cumsum", "matmul"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [29, 8 * PREFIX_MATMUL_MIN_CHUNKS + 3])  # "auto": the cumsum, then the GEMM
def test_gau_chunk_prefix_option_equals_the_dense_reference(chunk_prefix, causal, T):
    torch.manual_seed(0)
    layer = GAU(16, expansion=2, s=8, causal=causal, max_len=T, attention="mixed_chunk", chunk=8,
                chunk_prefix=chunk_prefix)
    assert_layer_equals_its_dense_reference(layer, T)


@pytest.mark.parametrize("chunk_prefix", ["auto", "cumsum", "matmul"])
def test_flash_chunk_prefix_model_option_reaches_the_op(chunk_prefix, monkeypatch):
    """build_model("flash", chunk_prefix=...) hands the way to every layer's exclusive_chunk_prefix, and
    the three ways give the same logits and gradients (float64, up to rounding)."""
    seen = []
    real = chunk_ops.exclusive_chunk_prefix
    monkeypatch.setattr(chunk_ops, "exclusive_chunk_prefix", lambda kv, how: seen.append(how) or real(kv, how))
    runs = {}
    for way in ("auto", chunk_prefix):
        torch.manual_seed(0)
        model = impl.build_model("flash", vocab_size=20, d_model=16, n_layers=1, max_len=48, s=8, chunk=4,
                                 chunk_prefix=way)
        tokens = torch.randint(0, 20, (2, 45))
        out = model(tokens)
        grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
        runs[way] = (out, grads)
    assert seen == ["auto"] * 2 + [chunk_prefix] * 2  # two GAU layers per block
    assert impl.get_spec("flash").options["chunk_prefix"] == "auto"
    (out_a, grads_a), (out_b, grads_b) = runs["auto"], runs[chunk_prefix]
    torch.testing.assert_close(out_b, out_a, rtol=1e-10, atol=1e-10)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


def test_bad_chunk_prefix_is_refused_naming_the_valid_ways():
    with pytest.raises(ValueError, match="chunk_prefix='scan' for model 'flash': valid values: auto, cumsum, matmul"):
        impl.build_model("flash", vocab_size=10, d_model=8, n_layers=1, max_len=8, chunk_prefix="scan")
    with pytest.raises(ValueError, match="chunk_prefix"):
        GAU(8, expansion=2, s=4, causal=False, max_len=8, attention="mixed_chunk", chunk=4, chunk_prefix="cumprod")
    qs, v = inputs(T=16)
    for causal in (True, False):  # the op refuses it too, also where it would not use it
        with pytest.raises(ValueError, match="valid: auto, cumsum, matmul"):
            mixed_chunk_attention(*qs, v, None, 4, causal, chunk_prefix="scan")
    with pytest.raises(ValueError, match="unknown model option"):  # FLASH-Quad has no chunks to sum
        impl.build_model("flash_quad", vocab_size=10, d_model=8, n_layers=1, max_len=8, chunk_prefix="auto")


def test_global_normalisers_divide_the_linear_part_as_documented():
    """Causal chunk g: 'tokens' divides by g C, 'chunk' by C, 'none' by 1; bidirectional: T, T, 1."""
    qs, v = inputs(T=32)
    C, G = 8, 4
    ref = {n: mixed_chunk_attention(*qs, v, None, C, True, "global", global_norm=n) for n in ("tokens", "chunk", "none")}
    for g in range(1, G):
        rows = slice(g * C, (g + 1) * C)
        torch.testing.assert_close(ref["tokens"][:, rows] * g * C, ref["none"][:, rows])
        torch.testing.assert_close(ref["chunk"][:, rows] * C, ref["none"][:, rows])
    both = {n: mixed_chunk_attention(*qs, v, None, C, False, "global", global_norm=n) for n in ("tokens", "chunk", "none")}
    torch.testing.assert_close(both["tokens"], both["chunk"])
    torch.testing.assert_close(both["tokens"] * 32, both["none"])
    with pytest.raises(ValueError, match="global_norm"):
        impl.build_model("flash", vocab_size=10, d_model=8, n_layers=1, max_len=8, global_norm="sqrt")


@pytest.mark.parametrize("n", [8, 600])
def test_rope_relative_bias_depends_on_the_offset_only(n):
    torch.manual_seed(0)
    bias = RelativePositionBias(n, "rope")(min(n, 40))
    for offset in (-5, 0, 3):
        diag = torch.diagonal(bias, offset)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag))
    assert bias.std() > 0 and not torch.allclose(torch.diagonal(bias, 1), torch.diagonal(bias, -1))


def test_relative_bias_form_follows_the_papers_512_rule_and_starts_off_zero():
    assert RelativePositionBias(511).form == "toeplitz" and RelativePositionBias(511, "auto").form == "toeplitz"
    assert RelativePositionBias(512, "auto").form == "rope" and RelativePositionBias(40, "rope").form == "rope"
    for form in ("toeplitz", "rope"):
        torch.manual_seed(0)
        params = torch.cat([p.flatten() for p in RelativePositionBias(600, form).parameters()])
        assert 0.015 < params.std() < 0.025  # N(0, 0.02^2), as the paper's code
    with pytest.raises(ValueError, match="rel_pos_form"):
        RelativePositionBias(8, "alibi")


def test_paper_and_legacy_initialisations():
    torch.manual_seed(0)
    paper = GAU(256, expansion=2, s=128, causal=True, max_len=64, attention="mixed_chunk", chunk=16)
    legacy = GAU(256, expansion=2, s=128, causal=True, max_len=64, attention="mixed_chunk", chunk=16, init="legacy")
    for layer in (paper.to_hidden, paper.to_out):
        assert abs(layer.weight.std().item() - 0.02) < 0.002 and not layer.bias.any()
    assert paper.rel_pos_bias.weight.std() > 0.01 and not legacy.rel_pos_bias.weight.any()
    assert legacy.to_out.bias.any()  # nn.Linear's default: uniform biases
    with pytest.raises(ValueError, match="init"):
        GAU(8, expansion=2, s=4, causal=True, max_len=8, attention="quad", init="xavier")


def test_the_papers_rope_bias_can_start_dead_which_is_why_it_is_not_the_default():
    """Two N(0, 0.02^2) vectors give <RoPE_i(a), RoPE_j(b)> of ~0.005, often of one sign over all short
    offsets: then every causal relu^2 score of the layer is 0 at the start, and so are its gradients. The
    free Toeplitz vector (the default) has both signs in every layer."""
    dead = {}
    for form in ("rope", "toeplitz"):
        torch.manual_seed(0)
        model = impl.build_model("flash_quad", vocab_size=61, d_model=64, n_layers=10, max_len=48, rel_pos_form=form)
        biases = [layer.fn.rel_pos_bias(48).tril() for layer in model.layers]
        dead[form] = sum(bool((b <= 0).all()) for b in biases)
        assert max(b.abs().max().item() for b in biases) < (0.03 if form == "rope" else 0.1)
    assert dead["rope"] >= 1 and dead["toeplitz"] == 0, dead
    assert impl.get_spec("flash_quad").options["rel_pos_form"] == "toeplitz"


@pytest.mark.parametrize("attention", ["quad", "mixed_chunk"])
def test_heads_are_computed_wide_and_rounded_once_to_the_compute_dtype(attention):
    """Under bf16 autocast the scale-offset and RoPE run in float32 (gamma and beta are float32) and the
    heads reach the attention in bf16, each the float32 result rounded once; in float32 nothing is cast."""
    layer = GAU(16, expansion=2, s=8, causal=True, max_len=64, attention=attention, chunk=16).float()
    with torch.no_grad():
        layer.scale_offset.beta.normal_()  # offsets away from zero, so that both terms count
    x = torch.randn(2, 32, 16, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = layer.qkv(x)
        z = torch.nn.functional.silu(layer.to_hidden(x))[..., -layer.s:]
    assert z.dtype == torch.bfloat16
    wide = layer.rope(z.float().unsqueeze(0) * layer.scale_offset.gamma[:, None, None]
                      + layer.scale_offset.beta[:, None, None])[0]
    for got, want in zip(hidden.qk, wide.unbind(0)):
        assert got.dtype == torch.bfloat16
        assert torch.equal(got, want.to(torch.bfloat16))
    assert all(h.dtype == torch.float32 for h in layer.qkv(x).qk)
