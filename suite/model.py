"""A run's model: its checked configuration, built on a device, and compiled as the suite compiles."""
from __future__ import annotations

import torch

import implementations as impl

from .runs import RunConfig


def model_config(cfg: RunConfig, vocab_size: int) -> impl.ModelConfig:
    """The model config of a run (checked: model, options, mode, length)."""
    mc = impl.make_config(cfg.model, vocab_size=vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
                          max_len=cfg.context, causal=cfg.objective == "clm", **cfg.model_overrides())
    impl.check_length(cfg.model, mc, cfg.context)
    return mc


def build(model_cfg: impl.ModelConfig, seed: int, device: torch.device) -> torch.nn.Module:
    """The run's model, drawn from torch.manual_seed(seed), on the device."""
    torch.manual_seed(seed)
    return impl.build_from_config(model_cfg).to(device)


def compile_model(model: torch.nn.Module, mode: str | None = None) -> torch.nn.Module:
    """torch.compile: our models layer by layer (identical layers share one compiled graph, so
    compiling costs one layer's time, not 24), other models (peers) whole, as a user would.

    Static shapes (dynamic=False): on the H200, compiled FLASH ran 174 ms per step at 2K but
    204-207 ms at 512, 8K and 32K once a second shape in the same process had triggered a
    dynamic-shape recompile (results/NOTES.md). `mode`: torch.compile's mode (None: its default).
    """
    # A fresh compiler state for every run: the layers of all our models share one code object
    # (Residual.forward), so in a sweep the compiled graphs of earlier runs piled up on it until Dynamo's
    # recompile limit (8) made later runs fall back to eager without failing (on the H200, the 4th
    # model of a quality sweep onwards trained uncompiled). Compiled kernels stay in Inductor's disk cache.
    torch._dynamo.reset()
    # and should a run still exceed the limit (many shapes in one run), fail loudly instead of timing eager
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    layers = getattr(model, "layers", None)
    if isinstance(model, impl.layers.LanguageModel) and layers is not None:
        for layer in layers:
            layer.compile(dynamic=False, mode=mode)
        return model
    return torch.compile(model, dynamic=False, mode=mode)
