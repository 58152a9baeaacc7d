"""The optimiser and the learning-rate schedule every run uses: AdamW, warm-up then cosine decay."""
from __future__ import annotations

import math

import torch

from .runs import RunConfig

ADAM_BETAS = (0.9, 0.98)
LR_FLOOR = 0.1  # the cosine decay ends at this fraction of the peak learning rate


def no_weight_decay(model: torch.nn.Module) -> set[int]:
    """ids of the parameters AdamW must not decay: every vector or scalar (biases, norms) and what a
    module lists in its `no_weight_decay` attribute (the GAU's gains, offsets and relative-position bias)."""
    skip = {id(p) for p in model.parameters() if p.dim() < 2}
    for module in model.modules():
        for name in getattr(module, "no_weight_decay", ()):
            p = getattr(module, name, None)
            if isinstance(p, torch.nn.Parameter):
                skip.add(id(p))
    return skip


def make_optimizer(model: torch.nn.Module, cfg: RunConfig, device: torch.device) -> torch.optim.Optimizer:
    skip = no_weight_decay(model)
    decay = [p for p in model.parameters() if id(p) not in skip]
    other = [p for p in model.parameters() if id(p) in skip]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=ADAM_BETAS, fused=device.type == "cuda")


def lr_factor(cfg: RunConfig, step: int, progress: float) -> float:
    """Linear warm-up, then cosine decay to LR_FLOOR of the peak over the run's progress (by steps, or by
    time)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    return LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
