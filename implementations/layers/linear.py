"""nn.Linear whose bias gradient comes from a matrix multiply instead of a column sum.

The gradient of a bias is the sum of the output gradient over all tokens: a reduction over the
outer (row) axis of a [tokens, features] tensor. Under torch.compile, Inductor fuses that sum into
the element-wise backward of whatever follows the layer (for the GAU: SiLU), and its code for such
outer-axis reductions is slow. On an H200 the fused SiLU-backward + bias-gradient kernel was the
largest element-wise kernel of a FLASH step (results/NOTES.md, entries 6, 9 and 11).

Here the same gradient is ones[1, tokens] @ grad[tokens, features]. The matmul is handed to cuBLAS,
and the element-wise backward stays a plain pointwise kernel: a GAU layer's compiled forward +
backward took 5.89 instead of 6.00 ms at 2K on the H200 (entry 11). The parameters, outputs and the
state dict are those of nn.Linear. Casting follows autocast as nn.Linear does:
inputs, weight and bias are cast to the autocast dtype and the casts are saved for the backward.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _autocast_dtype(x: torch.Tensor) -> torch.dtype:
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


class _LinearBiasGradMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        dtype = _autocast_dtype(x)
        xc, wc = x.to(dtype), weight.to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            out = F.linear(xc, wc, bias.to(dtype))
        ctx.save_for_backward(xc, wc)
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype)
        return out

    @staticmethod
    def backward(ctx, grad):
        xc, wc = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        grad = grad.to(wc.dtype)
        rows = grad.reshape(-1, grad.shape[-1])
        ones = torch.ones(1, rows.shape[0], dtype=rows.dtype, device=rows.device)
        grad_x = (grad @ wc).to(x_dtype)
        grad_w = (rows.t() @ xc.reshape(-1, xc.shape[-1])).to(w_dtype)
        grad_b = (ones @ rows).reshape(-1).to(b_dtype)
        return grad_x, grad_w, grad_b


class Linear(nn.Linear):
    """nn.Linear whose bias gradient comes from a matrix multiply (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return super().forward(x)
        return _LinearBiasGradMM.apply(x, self.weight, self.bias)
