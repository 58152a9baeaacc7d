"""Executing one run: build the model, train it (learning curve) or time it (speed), summarise.

Every outcome is a result: out-of-memory, a non-finite loss or divergence end the run and are
recorded with their status, never raised to the sweep.

Data-parallel (`ddp=True` under torchrun): every process builds the same model, wraps it in
DistributedDataParallel and draws its own 1/world of each global batch (tokens_per_step stays the
global number); the loss and the step time are averaged over the processes every step, so every
process takes the same decisions (time budget, evaluations, divergence) and none waits for ever.
"""
from __future__ import annotations

import gc
import inspect
import json
import math
import time
from dataclasses import dataclass, replace
from typing import Any

import torch

import implementations as impl
from implementations.flops import train_flops_per_token

from . import distributed as D
from . import provenance
from .hardware import peak_tflops
from .objectives import IGNORE_INDEX as IGNORE
from .objectives import MASK_PROB, loss_fn
from .runs import RunConfig
from .tokenizer import bits_per_byte
from .timing import is_oom, kernels_that_ran, sdpa_context, summarise, synchronize, time_steps


@dataclass
class Batches:
    """What a run draws its tokens from. `sample(generator) -> (inputs, targets)` on the CPU."""

    sample: Any
    evaluate: Any = None          # () -> list of (inputs, targets) for held-out evaluation
    vocab_size: int = 0
    bytes_per_token: float = 1.0
    corpus: str = "random"
    tokenizer: str = "none"
    data_hash: str = ""


def random_batches(cfg: RunConfig) -> Batches:
    """Random tokens: speed runs (time does not depend on the data); MLM predicts MASK_PROB of positions."""
    V, B, T = cfg.vocab_size, cfg.batch_size, cfg.context

    def sample(gen: torch.Generator):
        x = torch.randint(0, V, (B, T + 1), generator=gen)
        if cfg.objective == "clm":
            return x[:, :-1], x[:, 1:]
        targets = torch.where(torch.rand(B, T, generator=gen) < MASK_PROB, x[:, :-1], IGNORE)
        return x[:, :-1], targets

    return Batches(sample=sample, vocab_size=V)


def model_config(cfg: RunConfig, vocab_size: int) -> impl.ModelConfig:
    """The model config of a run (checked: model, options, mode, length)."""
    mc = impl.make_config(cfg.model, vocab_size=vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
                          max_len=cfg.context, causal=cfg.objective == "clm", **cfg.model_overrides())
    impl.check_length(cfg.model, mc, cfg.context)
    return mc


def build(cfg: RunConfig, vocab_size: int, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    model_config(cfg, vocab_size)
    return impl.build_model(cfg.model, vocab_size=vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
                            max_len=cfg.context, causal=cfg.objective == "clm", **cfg.model_overrides()).to(device)


ADAM_BETAS = (0.9, 0.98)


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
    """Linear warm-up, then cosine decay to 10% over the run's progress (by steps, or by time)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


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


class Step:
    """One training step (forward, backward, clip, AdamW); returns the loss tensor.

    `ddp`: under torchrun with more than one process, the (compiled) model is wrapped in
    DistributedDataParallel (gradients averaged over the processes in the backward pass);
    evaluation uses the unwrapped model and splits the evaluation batches over the processes.
    """

    def __init__(self, model, cfg: RunConfig, device: torch.device, ddp: bool = False):
        self.eval_model = compile_model(model, cfg.compile_mode) if cfg.compile else model
        # compiled, the cross-entropy is one fused pass over the half-precision logits: no float32 copy
        # of them (on the H200: -17 ms per step at base size for every model, results/NOTES.md entry 10)
        self.loss = torch.compile(loss_fn, dynamic=False, mode=cfg.compile_mode) if cfg.compile else loss_fn
        self.world = D.world_size() if ddp and D.is_initialized() else 1
        self.model = self.eval_model
        if self.world > 1:
            DDP = torch.nn.parallel.DistributedDataParallel
            # buffers (RoPE tables, ...) are the same on every rank: no broadcast before every forward
            # (PyTorch >= 2.13 names this forward_sync_buffers, and deprecates broadcast_buffers)
            no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                       else {"broadcast_buffers": False})
            self.model = DDP(self.eval_model, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)
        self.raw_model = model
        self.opt = make_optimizer(model, cfg, device)
        self.cfg, self.device = cfg, device
        self.amp = cfg.precision == "bf16"

    def synced(self, loss: torch.Tensor, dt: float) -> tuple[float, float]:
        """(loss, step seconds) averaged over the processes: the same numbers on every rank."""
        both = torch.stack([loss.float(), torch.tensor(dt, dtype=torch.float32, device=loss.device)])
        loss_mean, dt_mean = (D.all_reduce_sum(both) / self.world).tolist()
        return loss_mean, dt_mean

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, lr_scale: float = 1.0) -> torch.Tensor:
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * lr_scale
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp), \
                sdpa_context(self.cfg.sdpa_backend):
            loss = self.loss(self.model(inputs), targets)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.detach()

    @torch.no_grad()
    def evaluate(self, batches, *, local: bool = False) -> float:
        """Mean held-out loss per token; data-parallel: each rank takes every world-th batch and the
        sums are added up (every rank must call it then, unless `local`)."""
        split = self.world > 1 and not local
        if split:
            batches = batches[D.rank()::self.world]
        self.eval_model.eval()
        total, count = 0.0, 0
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp), \
                sdpa_context(self.cfg.sdpa_backend):
            for inputs, targets in batches:
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                n = int((targets != IGNORE).sum())
                total += float(self.loss(self.eval_model(inputs), targets)) * n
                count += n
        self.eval_model.train()
        if split:
            sums = D.all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64, device=self.device))
            total, count = sums.tolist()
        return total / max(count, 1)


def base_summary(cfg: RunConfig, device: torch.device, data: Batches) -> dict[str, Any]:
    name = provenance.device_name(str(device))
    peak, _ = peak_tflops(name)
    cfg_model = model_config(cfg, data.vocab_size)
    return {
        "run_id": cfg.run_id, "status": "ok", "message": "", "kind": cfg.kind, "model": cfg.model, "variant": cfg.variant,
        "objective": cfg.objective, "context": cfg.context, "seed": cfg.seed, "size": cfg.size,
        "d_model": cfg.d_model, "n_layers": cfg.n_layers, "vocab_size": data.vocab_size,
        "batch_size": cfg.batch_size, "tokens_per_step": cfg.batch_size * cfg.context,
        "lr": cfg.lr, "schedule": "steps" if cfg.by_steps else "time",
        "train_flops_per_token": train_flops_per_token(cfg.model, cfg_model, cfg.context), "peak_tflops": peak,
        "device": str(device), "device_name": name, "precision": cfg.precision, "compile": cfg.compile,
        "attention_kernel": ("peer" if impl.is_peer(cfg.model) else cfg_model.options.get("attention_kernel", "n/a")),
        "sdpa_backend": cfg.sdpa_backend or "default", "world_size": 1,
        "corpus": data.corpus, "tokenizer": data.tokenizer, "data_hash": data.data_hash,
        **provenance.software(), "config_json": json.dumps(cfg.as_dict(), sort_keys=True),
    }


def speed_numbers(summary: dict[str, Any], ms: list[float], device: torch.device) -> dict[str, Any]:
    out = summarise(ms)
    tokens = summary["tokens_per_step"]
    out["timed_steps"] = len(ms)
    out["tokens_per_s"] = tokens / (out["step_ms_median"] / 1e3) if ms else float("nan")
    out["model_tflops"] = summary["train_flops_per_token"] * out["tokens_per_s"] / 1e12
    peak = summary["peak_tflops"] * summary.get("world_size", 1)  # data-parallel: every process's GPU
    out["mfu"] = out["model_tflops"] / peak if peak == peak else float("nan")
    if device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def run(cfg: RunConfig, data: Batches | None = None, *, progress=None,
        ddp: bool = False) -> tuple[dict[str, Any], list[dict]]:
    """Execute one run; returns (summary row, learning curve rows).

    Under torchrun, "cuda" means this process's GPU, cuda:LOCAL_RANK. `ddp`: data-parallel over all
    processes (every rank must call it with the same run); `data` then yields this rank's part of
    each batch (tokens_per_step / world tokens), and the summary counts global tokens.
    """
    device = torch.device(D.resolve_device(cfg.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but PyTorch sees no CUDA device")
    world = D.world_size() if ddp and D.is_initialized() else 1
    if data is None:  # random tokens: this rank's part of the batch
        data = random_batches(cfg if world == 1 else replace(cfg, tokens_per_step=cfg.tokens_per_step // world))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 matmuls left outside autocast (FAVOR+ features)
        torch.backends.cudnn.allow_tf32 = True
    summary = base_summary(cfg, device, data)
    summary["world_size"] = world
    if world > 1:
        summary["batch_size_per_rank"] = cfg.batch_size // world
    curve: list[dict] = []
    step = None
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        model = build(cfg, data.vocab_size, device)
        summary["n_params"] = sum(p.numel() for p in model.parameters())
        step = Step(model, cfg, device, ddp=ddp)
        # data-parallel: a different stream of batches on every rank (rank 0's is the single-process one)
        gen = torch.Generator().manual_seed(cfg.seed + 1 + 1_000_003 * (D.rank() if world > 1 else 0))
        if cfg.kind == "speed":
            inputs, targets = (t.to(device) for t in data.sample(gen))
            ms = time_steps(lambda: step(inputs, targets), device, warmup=cfg.warmup_timing_steps,
                            steps=cfg.timed_steps)
            summary.update(speed_numbers(summary, ms, device))
            summary["steps"] = cfg.warmup_timing_steps + cfg.timed_steps
            with sdpa_context(cfg.sdpa_backend):
                summary["sdpa_backend_seen"] = kernels_that_ran(lambda: step(inputs, targets), device)
        else:
            result, ms = train(cfg, step, data, gen, device, curve, progress)
            summary.update(speed_numbers(summary, ms, device))
            summary.update(result)
    except Exception as exc:  # every failure is a result row
        summary["status"] = "oom" if is_oom(exc) else "error"
        summary["message"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    finally:
        step = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return summary, curve


def train(cfg: RunConfig, step: Step, data: Batches, gen: torch.Generator, device: torch.device,
          curve: list[dict], progress=None) -> tuple[dict[str, Any], list[float]]:
    """Train for cfg.budget_s seconds of training time (evaluation excluded) or cfg.max_steps, whichever
    comes first; with budget_s None, exactly cfg.max_steps steps, schedule and evaluations on steps.

    Returns the summary fields and the step times (ms) after warm-up.
    """
    eval_batches = data.evaluate()
    if cfg.compile:  # compile outside the clock: one forward and backward, no update
        inputs, targets = (t.to(device) for t in data.sample(torch.Generator().manual_seed(cfg.seed + 99)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=step.amp):
            step.loss(step.model(inputs), targets).backward()
        step.opt.zero_grad(set_to_none=True)
        step.evaluate(eval_batches[:1], local=True)
    budget = float("inf") if cfg.by_steps else cfg.budget_s
    # evaluation points: training seconds, or (by steps) step counts, the same for every model
    eval_points = ([round(cfg.max_steps * (i + 1) / cfg.evals) for i in range(cfg.evals)] if cfg.by_steps
                   else [budget * (i + 1) / cfg.evals for i in range(cfg.evals)])
    ms: list[float] = []
    out: dict[str, Any] = {"status": "ok"}
    train_time, n, loss_value, initial = 0.0, 0, float("nan"), None
    ln_vocab = math.log(data.vocab_size)

    def record(loss_now: float):
        eval_loss = step.evaluate(eval_batches)
        curve.append({"run_id": cfg.run_id, "model": cfg.model, "objective": cfg.objective, "context": cfg.context,
                      "seed": cfg.seed, "step": n, "time_s": train_time, "tokens": n * cfg.batch_size * cfg.context,
                      "train_loss": loss_now, "eval_loss": eval_loss,
                      "eval_bpb": bits_per_byte(eval_loss, data.bytes_per_token)})
        return eval_loss

    while n < cfg.max_steps and train_time < budget:
        inputs, targets = (t.to(device, non_blocking=True) for t in data.sample(gen))
        synchronize(device)
        t0 = time.perf_counter()
        loss = step(inputs, targets, lr_factor(cfg, n, max(n / cfg.max_steps, train_time / budget)))
        loss_value = float(loss)  # synchronises
        dt = time.perf_counter() - t0
        if step.world > 1:  # data-parallel: the same numbers, so the same decisions, on every rank
            loss_value, dt = step.synced(loss, dt)
        train_time += dt
        ms.append(dt * 1e3)
        n += 1
        if progress is not None:
            progress.set_postfix_str(f"{cfg.model} T={cfg.context} step {n} loss {loss_value:.3f}", refresh=False)
        if initial is None:
            initial = loss_value
        if not math.isfinite(loss_value):
            out.update(status="nan", message=f"non-finite training loss at step {n}")
            break
        if n > cfg.warmup_steps and loss_value > max(2 * ln_vocab, initial + 2.0):
            out.update(status="diverged", message=f"training loss {loss_value:.2f} at step {n} (started at {initial:.2f})")
            break
        clock = n if cfg.by_steps else train_time
        if eval_points and clock >= eval_points[0]:
            while eval_points and clock >= eval_points[0]:
                eval_points.pop(0)
            record(loss_value)
    if out["status"] == "ok" and (not curve or curve[-1]["step"] != n):
        record(loss_value)
    final_eval = curve[-1]["eval_loss"] if curve else float("nan")
    if out["status"] == "ok" and not math.isfinite(final_eval):
        out.update(status="nan", message="non-finite evaluation loss")
    out.update({"steps": n, "tokens": n * cfg.batch_size * cfg.context, "train_time_s": train_time,
                "final_train_loss": loss_value, "final_eval_loss": final_eval,
                "final_bpb": bits_per_byte(final_eval, data.bytes_per_token)})
    skip = min(cfg.warmup_steps, 5, max(0, len(ms) - 1))  # the first steps carry one-off costs
    return out, ms[skip:]
