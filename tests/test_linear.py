"""layers.Linear: the bias gradient from a matmul gives nn.Linear's numbers, eager, autocast and compiled."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from implementations.layers import Linear


def pair(seed=0, bias=True, dtype=torch.float64):
    torch.manual_seed(seed)
    ref = nn.Linear(12, 20, bias=bias).to(dtype)
    ours = Linear(12, 20, bias=bias).to(dtype)
    ours.load_state_dict(ref.state_dict())  # the same parameters and state dict as nn.Linear
    return ref, ours


def grads_of(layer, x, w):
    out = F.silu(layer(x))  # an element-wise op after the layer, as in the GAU
    params = [p for p in layer.parameters()]
    return out, torch.autograd.grad((out * w).sum(), [x, *params])


@pytest.mark.parametrize("bias", [True, False])
def test_matches_nn_linear_in_float64(bias):
    ref, ours = pair(bias=bias)
    x = torch.randn(3, 7, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 7, 20, dtype=torch.float64)
    (o1, g1), (o2, g2) = grads_of(ref, x, w), grads_of(ours, x, w)
    torch.testing.assert_close(o2, o1, rtol=0, atol=0)
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_follows_autocast_like_nn_linear():
    ref, ours = pair(dtype=torch.float32)
    x = torch.randn(4, 9, 12, requires_grad=True)
    w = torch.randn(4, 9, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (o1, g1), (o2, g2) = grads_of(ref, x, w), grads_of(ours, x, w)
    assert o2.dtype == o1.dtype == torch.bfloat16
    torch.testing.assert_close(o2, o1, rtol=0, atol=0)  # the same casts, the same bf16 GEMM
    for a, b in zip(g2, g1):
        assert a.dtype == b.dtype  # gradients in the parameters' and input's dtypes
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)  # bf16 sums in another order


def test_compiled_matches_eager():
    ref, ours = pair(dtype=torch.float32)
    x = torch.randn(2, 16, 12, requires_grad=True)
    w = torch.randn(2, 16, 20)
    try:
        compiled = torch.compile(ours, dynamic=False)
        o2, g2 = grads_of(compiled, x, w)
    except Exception as exc:  # pragma: no cover - depends on a C++ compiler being present
        pytest.skip(f"torch.compile unavailable on this machine: {exc.__class__.__name__}")
    o1, g1 = grads_of(ref, x, w)
    torch.testing.assert_close(o2, o1, rtol=1e-5, atol=1e-6)
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

