"""Executing one run: build the model, train it (learning curve) or time it (speed), summarise.
The pieces live beside it: batches (the data), model (build, compile), optim (AdamW, schedule), step
(one training step, evaluation), summary (the result row).

Every outcome is a result: out-of-memory, a non-finite loss or divergence end the run and are
recorded with their status, never raised to the sweep.

Data-parallel (`ddp=True` under torchrun): every process builds the same model, wraps it in
DistributedDataParallel and draws its own 1/world of each global batch (tokens_per_step stays the
global number); the loss and the step time are averaged over the processes every step, so every
process takes the same decisions (time budget, evaluations, divergence) and none waits for ever.
"""
from __future__ import annotations

import gc
import math
import time
from dataclasses import replace
from typing import Any

import torch

from . import distributed as D
from .batches import Batches, random_batches
from .model import build, model_config
from .optim import lr_factor
from .runs import RunConfig
from .step import Step
from .summary import base_summary, speed_numbers
from .timing import is_oom, kernels_that_ran, sdpa_context, synchronize, time_steps
from .tokenizer import bits_per_byte

# Seeds derived from a run's seed: its model is drawn from `seed` itself; its training batches from
# seed + BATCH_SEED_OFFSET (+ RANK_SEED_STRIDE * rank under data parallelism, so ranks draw different
# batches and rank 0 draws the single-process stream); the batch that compiles the model outside the
# clock from seed + COMPILE_BATCH_SEED_OFFSET.
BATCH_SEED_OFFSET, RANK_SEED_STRIDE, COMPILE_BATCH_SEED_OFFSET = 1, 1_000_003, 99


def run(cfg: RunConfig, data: Batches | None = None, *, progress=None,
        ddp: bool = False) -> tuple[dict[str, Any], list[dict]]:
    """Execute one run; returns (summary row, learning curve rows).

    Under torchrun, "cuda" means this process's GPU, cuda:LOCAL_RANK. `ddp`: data-parallel over all
    processes (every rank must call it with the same run); `data` then yields this rank's part of
    each batch (tokens_per_step / world tokens), and the summary counts global tokens.
    """
    device = torch.device(D.resolve_device(cfg.device))
    D.check_device(str(device))  # the CLI checked it before any work; a direct caller gets the same check
    world = D.world_size() if ddp and D.is_initialized() else 1
    if data is None:  # random tokens: this rank's part of the batch
        data = random_batches(cfg if world == 1 else replace(cfg, tokens_per_step=cfg.tokens_per_step // world))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 matmuls left outside autocast (FAVOR+ features)
        torch.backends.cudnn.allow_tf32 = True
    model_cfg = model_config(cfg, data.vocab_size)  # the run's one model configuration
    summary = base_summary(cfg, model_cfg, device, data)
    summary["world_size"] = world
    if world > 1:
        summary["batch_size_per_rank"] = cfg.batch_size // world
    curve: list[dict] = []
    step = None
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        model = build(model_cfg, cfg.seed, device)
        summary["n_params"] = sum(p.numel() for p in model.parameters())
        step = Step(model, cfg, device, ddp=ddp)
        gen = torch.Generator().manual_seed(cfg.seed + BATCH_SEED_OFFSET + RANK_SEED_STRIDE * (D.rank() if world > 1 else 0))
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
        inputs, targets = (t.to(device) for t in data.sample(torch.Generator().manual_seed(cfg.seed + COMPILE_BATCH_SEED_OFFSET)))
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
