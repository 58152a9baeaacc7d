"""Combiner attention: the vectorised form against its dense factorised reference, and the model's contracts."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import implementations as impl
from implementations.attention.softmax import materialized_attention
from implementations.models.combiner import (CombinerAttention, combiner_attention, combiner_dense_probabilities,
                                             default_block)

VOCAB, D, LAYERS, MAX_LEN, BLOCK = 53, 32, 2, 40, 8


def qkv(B=2, H=3, T=24, Dh=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, H, T, Dh, generator=g, dtype=dtype) for _ in range(3))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T,block", [(24, 8), (21, 8), (5, 8), (8, 8), (30, 4), (17, 16), (9, 1)])
def test_equals_dense_reference(causal, T, block):
    q, k, v = qkv(T=T)
    out = combiner_attention(q, k, v, causal=causal, block=block)
    P = combiner_dense_probabilities(q, k, causal=causal, block=block)
    torch.testing.assert_close(out, P @ v, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [24, 21])
def test_probabilities_are_distributions(causal, T):
    q, k, _ = qkv(T=T, seed=1)
    P = combiner_dense_probabilities(q, k, causal=causal, block=8)
    torch.testing.assert_close(P.sum(-1), torch.ones(P.shape[:-1], dtype=P.dtype), rtol=1e-12, atol=1e-12)
    assert (P >= 0).all()
    if causal:
        assert (P.triu(1) == 0).all()
    else:
        assert (P > 0).all()  # full attention: every query reaches every key


def test_reference_matches_the_factorisation_by_hand():
    """One query, checked entry by entry against p(j|i) = p(row|i) p(j|row) (causal, T=6, C=2)."""
    q, k, _ = qkv(B=1, H=1, T=6, Dh=4, seed=2)
    q, k = q[0, 0], k[0, 0]
    P = combiner_dense_probabilities(q, k, causal=True, block=2)
    i, sc = 5, 1 / math.sqrt(4)
    direct = {j: math.exp(float(q[i] @ k[j]) * sc) for j in (4, 5)}
    regions = {r: math.exp(float(q[i] @ k[2 * r:2 * r + 2].mean(0)) * sc) for r in (0, 1)}
    Z = sum(direct.values()) + sum(regions.values())
    for j in range(6):
        if j in direct:
            expect = direct[j] / Z
        else:
            r = j // 2
            within = torch.softmax(k[2 * r:2 * r + 2] @ q[2 * r:2 * r + 2].mean(0) * sc, 0)[j - 2 * r]
            expect = regions[r] / Z * float(within)
        assert abs(float(P[i, j]) - expect) < 1e-12


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [1, 7, 16])
def test_short_sequences_are_plain_softmax_attention(causal, T):
    q, k, v = qkv(T=T, seed=3)
    torch.testing.assert_close(combiner_attention(q, k, v, causal=causal, block=16),
                               materialized_attention(q, k, v, causal), rtol=1e-10, atol=1e-10)


def test_causal_attention_ignores_the_future():
    q, k, v = qkv(T=29, seed=4)
    out = combiner_attention(q, k, v, causal=True, block=4)
    for t in (1, 4, 13, 28):
        q2, k2, v2 = (x.clone() for x in (q, k, v))
        for x in (q2, k2, v2):
            x[:, :, t:] = torch.randn_like(x[:, :, t:])
        out2 = combiner_attention(q2, k2, v2, causal=True, block=4)
        torch.testing.assert_close(out2[:, :, :t], out[:, :, :t], rtol=0, atol=1e-12)
        # a prefix run alone gives the same outputs
        torch.testing.assert_close(combiner_attention(q[:, :, :t], k[:, :, :t], v[:, :, :t], causal=True, block=4),
                                   out[:, :, :t], rtol=1e-12, atol=1e-12)


def test_padding_does_not_leak_into_bidirectional_outputs():
    """T = 21 pads the last row; its padded keys must get zero mass (checked through the reference, which never pads)."""
    q, k, v = qkv(T=21, seed=5)
    out = combiner_attention(q, k, v, causal=False, block=8)
    assert out.shape == v.shape
    torch.testing.assert_close(out, combiner_dense_probabilities(q, k, causal=False, block=8) @ v,
                               rtol=1e-10, atol=1e-10)


def tiny(causal: bool, dtype=torch.float64, seed=0, **extra):
    torch.manual_seed(seed)
    model = impl.build_model("combiner", vocab_size=VOCAB, d_model=D, n_layers=LAYERS, max_len=MAX_LEN,
                             causal=causal, **{"block": BLOCK, **extra})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.to(dtype)


def test_model_is_causal():
    model = tiny(causal=True)
    tokens = torch.randint(0, VOCAB, (2, 37))
    base = model(tokens)
    for t in (1, 8, 13, 36):
        changed = tokens.clone()
        changed[:, t:] = (changed[:, t:] + 1 + torch.randint(0, VOCAB - 1, changed[:, t:].shape)) % VOCAB
        out = model(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=1e-10, atol=1e-10)
        assert not torch.allclose(out[:, t:], base[:, t:])


def test_bidirectional_model_sees_the_future():
    model = tiny(causal=False)
    tokens = torch.randint(0, VOCAB, (2, 37))
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % VOCAB
    assert (model(changed)[:, 0] - model(tokens)[:, 0]).abs().max() > 1e-9  # through the last row's abstraction


@pytest.mark.parametrize("causal", [True, False])
def test_gradients_are_finite_and_reach_every_parameter(causal):
    model = tiny(causal, dtype=torch.float32)
    tokens = torch.randint(0, VOCAB, (2, 30))
    loss = F.cross_entropy(model(tokens).flatten(0, 1), torch.randint(0, VOCAB, (60,)))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("causal", [True, False])
def test_bf16_autocast_forward_is_finite(causal):
    model = tiny(causal, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randint(0, VOCAB, (2, MAX_LEN)))
    assert out.shape == (2, MAX_LEN, VOCAB) and torch.isfinite(out.float()).all()


def test_attention_module_matches_functional_form():
    torch.manual_seed(6)
    attn = CombinerAttention(16, 2, causal=True, block=4).double()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    q, k, v = attn.qkv(x).view(2, 11, 3, 2, 8).permute(2, 0, 3, 1, 4)
    q, k = attn.rope(q, k)
    P = combiner_dense_probabilities(q, k, causal=True, block=4)
    expect = attn.out((P @ v).transpose(1, 2).reshape(2, 11, 16))
    torch.testing.assert_close(attn(x), expect, rtol=1e-10, atol=1e-10)


def test_default_block_and_options():
    assert [default_block(n) for n in (48, 512, 4096, 8192, 32768)] == [64, 64, 64, 128, 256]
    spec = impl.get_spec("combiner")
    assert set(spec.options) == {"n_heads", "block", "norm", "tie_embeddings"}
    assert not spec.quadratic and spec.causal and spec.bidirectional and spec.family == "transformer"
    with pytest.raises(ValueError, match="valid options"):
        impl.build_model("combiner", vocab_size=10, d_model=16, n_layers=1, max_len=8, chunk=4)
    with pytest.raises(ValueError, match="block"):
        impl.build_model("combiner", vocab_size=10, d_model=16, n_layers=1, max_len=8, block=0)


def test_flops_grow_subquadratically():
    cfg = impl.make_config("combiner", vocab_size=32768, d_model=768, n_layers=12, max_len=32768)
    ref = impl.make_config("transformer_plus_plus", vocab_size=32768, d_model=768, n_layers=12, max_len=32768)
    spec, ref_spec = impl.get_spec("combiner"), impl.get_spec("transformer_plus_plus")
    a = [spec.flops(cfg, T)["attention"] for T in (512, 32768)]
    b = [ref_spec.flops(ref, T)["attention"] for T in (512, 32768)]
    assert a[1] / a[0] < 4 < b[1] / b[0]
    assert spec.flops(cfg, 512)["ffn"] == ref_spec.flops(ref, 512)["ffn"]


def test_same_parameters_as_transformer_plus_plus():
    def count(name):
        with torch.device("meta"):
            m = impl.build_model(name, vocab_size=1000, d_model=128, n_layers=2, max_len=1024)
        return sum(p.numel() for p in m.parameters())
    assert count("combiner") == count("transformer_plus_plus")
