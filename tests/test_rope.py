"""RoPE (layers/rope.py): a rotation by position, relative in its products, the same numbers from its tables."""
from __future__ import annotations

import pytest
import torch

import implementations as impl
from implementations.layers.rope import RotaryEmbedding


def test_rotation_keeps_norms_and_products_depend_on_the_offset_only():
    rope = RotaryEmbedding(8, max_len=64)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    ra, rb = rope(a.expand(64, -1).clone(), b.expand(64, -1).clone())
    torch.testing.assert_close(ra.norm(dim=-1), a.norm().expand(64))
    gram = ra @ rb.t()  # gram[i, j] = <RoPE_i(a), RoPE_j(b)>
    for offset in (-5, 0, 3, 17):
        diagonal = torch.diagonal(gram, offset=offset)
        # (float32 angles: relative up to their rounding, ~1e-6 rad at position 63)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal), rtol=0, atol=1e-5)
    assert not torch.allclose(torch.diagonal(gram, 0)[:1], torch.diagonal(gram, 3)[:1])


@pytest.mark.parametrize("T", [1, 37, 64, 100])
def test_tables_give_the_computed_numbers_within_and_beyond_max_len(T):
    x = torch.randn(2, 3, T, 16, dtype=torch.float64)
    computed = RotaryEmbedding(16)(x)[0]
    tabled = RotaryEmbedding(16, max_len=64)
    assert torch.equal(tabled(x)[0], computed)  # T > 64: computed at the call, as without tables
    assert tabled(x.float())[0].dtype == torch.float32 and tabled(x.bfloat16())[0].dtype == torch.bfloat16


def test_a_float64_module_computes_float64_angles():
    """`.double()` casts the float32 tables; the rotation then computes them in float64 at the call, as a module
    without tables does (the float64 parity tests against JAX rely on it)."""
    x = torch.randn(1, 50, 16, dtype=torch.float64)
    tabled, plain = RotaryEmbedding(16, max_len=64).double(), RotaryEmbedding(16).double()
    assert torch.equal(tabled(x)[0], plain(x)[0])
    angles = torch.outer(torch.arange(50, dtype=torch.float64), plain.inv_freq)
    torch.testing.assert_close(plain.cos_sin(50, x.device, x.dtype)[0][:, :8], angles.cos(), rtol=0, atol=1e-15)


def test_tables_are_buffers_outside_the_state_dict():
    rope = RotaryEmbedding(16, max_len=32)
    assert rope.cos_table.shape == rope.sin_table.shape == (32, 8)
    assert rope.state_dict() == {} and not list(rope.parameters())


def test_no_tables_beyond_their_size_limit_and_the_same_numbers():
    from implementations.layers import rope as R
    longest = R.TABLE_MAX_BYTES // (4 * 16)  # positions a dim-16 module tables
    assert RotaryEmbedding(16, max_len=longest).max_len == longest
    huge = RotaryEmbedding(16, max_len=longest + 1)
    assert huge.max_len == 0 and not hasattr(huge, "cos_table")
    x = torch.randn(1, 40, 16)
    assert torch.equal(huge(x)[0], RotaryEmbedding(16, max_len=64)(x)[0])


@pytest.mark.parametrize("name", impl.list_models("paper"))
def test_every_model_builds_its_rope_tables_for_its_max_len(name):
    """The tables are what the compiled rotation reads (otherwise cos and sin are recomputed per element)."""
    model = impl.build_model(name, vocab_size=20, d_model=32, n_layers=2, max_len=48)
    ropes = [m for m in model.modules() if isinstance(m, RotaryEmbedding)]
    if name == "transformer":  # absolute sinusoidal positions, no RoPE
        assert not ropes
        return
    assert ropes and all(r.max_len >= 48 and r.cos_table.shape[0] == r.max_len for r in ropes)
