"""One run of the sweep, as a plain, hashable configuration."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from implementations import SIZE_PRESETS

from .objectives import OBJECTIVES

KINDS = ("train", "speed")   # train: learning curve on real data; speed: step timing on random tokens
PRECISIONS = ("fp32", "bf16")
# torch.compile modes besides its default (`compile=True`); "max-autotune*" let Inductor pick Triton GEMM
# templates, which can fuse element-wise work into a matmul's epilogue (results/NOTES.md, entry 12)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# the framework a run trains in: PyTorch (suite/train.py), or JAX (suite/jax_step.py, implementations/jax)
BACKENDS = ("pytorch", "jax")
# fields added after results were recorded, left out of a run's identity while at their default, so that the
# run ids (and the finished runs) of earlier sweeps stay valid
LATER_FIELDS = {"backend": "pytorch", "loss": "torch"}
# how the training loss is computed: "torch" (the head's logits, then cross-entropy), or "liger" (Liger-Kernel's
# fused linear + cross-entropy: the logits never in memory at once; a GPU, our models, one process)
LOSSES = ("torch", "liger")


@dataclass(frozen=True)
class RunConfig:
    model: str
    context: int
    objective: str = "clm"
    seed: int = 0
    kind: str = "train"
    size: str = "tiny"
    tokens_per_step: int = 4096
    # training (kind == "train")
    corpus: str = "shakespeare"
    tokenizer: str = "bytes"
    bpe_vocab: int = 4096
    # how long a train run lasts: a training-time budget (evaluation excluded) with the schedule on time,
    # or, with budget_s None, exactly max_steps steps with the schedule and evaluations on steps (the
    # fair protocol: every model at the same learning rate at the same step)
    budget_s: float | None = 10.0
    max_steps: int = 100_000
    lr: float = 3e-3
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    evals: int = 8                  # evaluations spread evenly over the budget (or steps), plus one at the end
    eval_tokens: int = 32768        # held-out tokens per evaluation
    # timing (kind == "speed"; train runs time their own steps)
    vocab_size: int = 32768         # speed runs use random tokens over this vocabulary
    warmup_timing_steps: int = 3
    timed_steps: int = 10
    # how it runs
    device: str = "cpu"
    precision: str = "fp32"
    compile: bool | str = False           # True: torch.compile's default mode; or a mode in COMPILE_MODES
    attention_kernel: str | None = None   # softmax models: "sdpa" or "materialized"
    sdpa_backend: str | None = None       # None: PyTorch's choice; or cudnn, flash, efficient, math
    backend: str = "pytorch"              # one of BACKENDS; "jax" jit-compiles whatever `compile` says
    loss: str = "torch"                   # one of LOSSES (the training step's loss; evaluation always "torch")
    # the model options this run sets on top of the model's defaults (--set KEY=VALUE), as (key, value) pairs
    overrides: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self):
        # equal values must hash equally: 60 and 60.0 are the same budget
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("float", "float | None") and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; valid: {', '.join(OBJECTIVES)}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown run kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; valid: {', '.join(LOSSES)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; valid: {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.size not in SIZE_PRESETS:
            raise ValueError(f"unknown size {self.size!r}; valid: {', '.join(SIZE_PRESETS)}")
        if not isinstance(self.compile, bool) and self.compile not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {self.compile!r}; valid: {', '.join(COMPILE_MODES)}")
        if self.budget_s is not None and not (0 < self.budget_s < float("inf")):
            raise ValueError(f"the training-time budget must be a positive number of seconds, got {self.budget_s}")
        if not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            raise ValueError(f"the number of training steps must be a positive integer, got {self.max_steps!r}")
        if not (self.lr > 0 and self.lr < float("inf")):
            raise ValueError(f"the learning rate must be a positive number, got {self.lr}")
        if self.context < 1 or self.tokens_per_step < self.context:
            raise ValueError(f"context {self.context} must be >= 1 and at most tokens_per_step {self.tokens_per_step}")

    @property
    def batch_size(self) -> int:
        return self.tokens_per_step // self.context

    @property
    def d_model(self) -> int:
        return SIZE_PRESETS[self.size]["d_model"]

    @property
    def n_layers(self) -> int:
        return SIZE_PRESETS[self.size]["n_layers"]

    @property
    def by_steps(self) -> bool:
        """Train runs of a fixed number of steps, schedule and evaluations on steps (budget_s None)."""
        return self.budget_s is None

    @property
    def compile_mode(self) -> str | None:
        """torch.compile's `mode` argument: None for its default."""
        return self.compile if isinstance(self.compile, str) else None

    def model_overrides(self) -> dict[str, Any]:
        """Every model option the run sets: `overrides`, and the attention kernel when one is asked for."""
        out = dict(self.overrides)
        if self.attention_kernel is not None:
            out["attention_kernel"] = self.attention_kernel
        return out

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overrides"] = [list(kv) for kv in self.overrides]
        for name, default in LATER_FIELDS.items():
            if d[name] == default:
                del d[name]
        return d

    @property
    def run_id(self) -> str:
        """Content hash of everything that defines the run (not of where or when it ran)."""
        blob = json.dumps(self.as_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def variant(self) -> str:
        name = self.model
        extra = [f"{k}={v}" for k, v in self.overrides]
        if self.attention_kernel:
            extra.insert(0, self.attention_kernel)
        if self.sdpa_backend:
            extra.append(f"sdpa={self.sdpa_backend}")
        if isinstance(self.compile, str):
            extra.append(f"mode={self.compile}")
        if self.loss != "torch":
            extra.append(f"loss={self.loss}")
        if extra:
            name += "[" + ",".join(extra) + "]"
        if self.backend != "pytorch":  # compiled by the backend itself (jax.jit)
            return f"{name}+{self.backend}"
        return name + ("+compile" if self.compile else "")

    def label(self) -> str:
        return f"{self.kind}:{self.variant}:{self.objective}:T={self.context}:seed={self.seed}"
