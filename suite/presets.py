"""Sweep presets as plain Python data. A sweep = models x (objective, contexts) groups x seeds.

Every field of `base` is a RunConfig field; flags on the command line narrow or override them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import implementations as impl

SEVEN = impl.list_models("paper")  # the paper's seven models, in the paper's order (the registry's tag)


@dataclass(frozen=True)
class Preset:
    description: str
    models: list[str]
    groups: list[tuple[str, list[int]]]  # (objective, context lengths)
    seeds: list[int] = field(default_factory=lambda: [0])
    base: dict[str, Any] = field(default_factory=dict)
    # extra configurations of some models, e.g. compiled or with another attention kernel:
    # (models, overrides of RunConfig fields)
    variants: list[tuple[list[str], dict[str, Any]]] = field(default_factory=list)
    # external reference implementations (suite/peers.py), causal LM only: (peer names, RunConfig overrides)
    peers: list[tuple[list[str], dict[str, Any]]] = field(default_factory=list)
    # peak learning rate per model (over base["lr"]); a variant's or the command line's lr wins
    lr: dict[str, float] = field(default_factory=dict)
    # results folder name under results/<platform>/ (default: the preset's name)
    folder: str | None = None


# The fair protocol (issue 10): every model trains the same number of steps with the same step-based
# warm-up and cosine decay, so quality per step compares models at the same point of the same schedule;
# time per step is measured alongside. ~25M parameters (d 512, 8 blocks / 16 GAU layers), ELTeC bytes,
# 65,536 tokens per step, bf16, compiled.
QUALITY_STEPS = 600
QUALITY = dict(kind="train", size="quality", tokens_per_step=65536, budget_s=None, max_steps=QUALITY_STEPS,
               lr=1e-3, warmup_steps=50, evals=10, eval_tokens=262144, corpus="eltec", device="cuda",
               precision="bf16", compile=True)
LR_GRID = (1e-3, 2e-3, 4e-3)
# Each model's peak learning rate: the best of LR_GRID in the gpu-lr-sweep preset (causal LM 2K,
# QUALITY_STEPS steps, seed 0) on an H200; its table: results/nvidia-h200/gpu-quality/tables/lr_sweep.md
# Transformer and Performer came out best at the grid's lowest rate, FLASH and FLASH-Quad at its highest
# (FLASH-Quad's sweep ran with the paper's RoPE-built bias, rel_pos_form=auto): a wider grid is still owed.
QUALITY_LR: dict[str, float] = {"transformer": 1e-3, "transformer_plus": 2e-3, "transformer_plus_plus": 2e-3,
                                "performer": 1e-3, "combiner": 2e-3, "flash_quad": 4e-3, "flash": 4e-3}


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        description="CPU demonstration: all seven models, tiny size, Shakespeare, causal LM, ~3 minutes on 2 cores",
        models=SEVEN, groups=[("clm", [64, 256])],
        base=dict(kind="train", size="tiny", tokens_per_step=2048, budget_s=10.0, lr=3e-3, warmup_steps=10,
                  evals=4, eval_tokens=16384, corpus="shakespeare", device="cpu", precision="fp32"),
    ),
    "gpu-speed": Preset(
        description="H200 step latency at the paper's ~110M size: 65,536 tokens per step, bf16, vocab 32,768; "
                    "132 runs, ~20 min on one H200 (eager runs take 4-10 s, compiled ones 10-25 s; 84 eager runs "
                    "took 6 min on two H200s with torchrun); --peers adds ~30 min (compiling "
                    "flash-pytorch costs 100-250 s per length), so narrow it per device call",
        models=SEVEN,
        groups=[("clm", [512, 1024, 2048, 4096, 8192, 16384, 32768]), ("mlm", [512, 1024, 2048, 4096, 8192])],
        base=dict(kind="speed", size="base", tokens_per_step=65536, vocab_size=32768, device="cuda",
                  precision="bf16", warmup_timing_steps=3, timed_steps=10),
        variants=[(["transformer_plus_plus", "flash_quad", "flash"], {"compile": True}),
                  (["transformer_plus_plus"], {"attention_kernel": "materialized"})],
        peers=[(["peer:hf_llama", "peer:flash_pytorch"], {}),
               (["peer:hf_llama", "peer:flash_pytorch"], {"compile": True})],
    ),
    "gpu-quality": Preset(
        description=f"GPU quality at equal steps: ~25M parameters (d 512, 8 blocks / 16 GAU layers), ELTeC novels, "
                    f"bytes, {QUALITY_STEPS} steps of 65,536 tokens for every model with a step-based schedule, "
                    "each model at its peak learning rate from gpu-lr-sweep; variants: FLASH-Quad and FLASH with "
                    "the old zero-bias initialisation, FLASH-Quad with the paper's RoPE-built bias, FLASH with "
                    "the other two global normalisers; 28 runs per seed without variants, ~12 min on two H200s",
        models=SEVEN, groups=[("clm", [512, 2048, 8192]), ("mlm", [512, 2048])], seeds=[0, 1],
        base=QUALITY, lr=QUALITY_LR,
        variants=[(["flash_quad", "flash"], {"overrides": (("init", "legacy"), ("rel_pos_form", "toeplitz"))}),
                  (["flash_quad"], {"overrides": (("rel_pos_form", "auto"),)})]
        + [(["flash"], {"overrides": (("global_norm", n),)}) for n in ("chunk", "none")],
    ),
    "gpu-lr-sweep": Preset(
        description=f"each model's peak learning rate: {', '.join(f'{x:g}' for x in LR_GRID)} at the gpu-quality "
                    f"setting, causal LM 2K, seed 0; written into the gpu-quality folder, whose tables then take "
                    "every model at its best rate",
        models=SEVEN, groups=[("clm", [2048])], base=QUALITY, folder="gpu-quality",
        variants=[(SEVEN, {"lr": x}) for x in LR_GRID[1:]],
    ),
    "gpu-ablation": Preset(
        description="GPU ablations of FLASH as in the paper: chunk size 128..1024 and local-only / global-only / "
                    f"mixed attention, ~25M parameters, ELTeC, causal LM at 2K, {QUALITY_STEPS} steps per run",
        models=["flash", "transformer_plus_plus"], groups=[("clm", [2048])],
        base=QUALITY, lr=QUALITY_LR,
        variants=[(["flash"], {"overrides": (("chunk", c),)}) for c in (128, 512, 1024)]
        + [(["flash"], {"overrides": (("parts", p),)}) for p in ("local", "global")],
    ),
}
