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
from .checkpoint import Checkpointing, LoopState, restore
from .model import build, model_config
from .optim import lr_factor
from .runs import RunConfig
from .step import Step
from .summary import base_summary, speed_numbers
from .timing import is_oom, kernels_that_ran, sdpa_context, time_steps
from .tokenizer import bits_per_byte

# Seeds derived from a run's seed: its model is drawn from `seed` itself; its training batches from
# seed + BATCH_SEED_OFFSET (+ RANK_SEED_STRIDE * rank under data parallelism, so ranks draw different
# batches and rank 0 draws the single-process stream); the batch that compiles the model outside the
# clock from seed + COMPILE_BATCH_SEED_OFFSET.
BATCH_SEED_OFFSET, RANK_SEED_STRIDE, COMPILE_BATCH_SEED_OFFSET = 1, 1_000_003, 99


def run(cfg: RunConfig, data: Batches | None = None, *, progress=None, ddp: bool = False,
        checkpoints: Checkpointing | None = None) -> tuple[dict[str, Any], list[dict]]:
    """Execute one run; returns (summary row, learning curve rows).

    Under torchrun, "cuda" means this process's GPU, cuda:LOCAL_RANK. `ddp`: data-parallel over all
    processes (every rank must call it with the same run); `data` then yields this rank's part of
    each batch (tokens_per_step / world tokens), and the summary counts global tokens. `checkpoints`:
    a train run saves its state there at their interval and resumes from its checkpoint
    (suite/checkpoint.py); the caller removes it once the result is recorded.
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
    t_run = time.perf_counter()
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        model = build(model_cfg, cfg.seed, device)
        summary["n_params"] = sum(p.numel() for p in model.parameters())
        step = Step(model, cfg, device, ddp=ddp)
        gen = torch.Generator().manual_seed(cfg.seed + BATCH_SEED_OFFSET + RANK_SEED_STRIDE * (D.rank() if world > 1 else 0))
        if cfg.kind == "speed":
            inputs, targets = step.put(data.sample(gen))
            if cfg.compile:  # the first call compiles: its time, apart (one of the warm-up steps)
                t0 = time.perf_counter()
                step(inputs, targets)
                step.sync()
                summary["compile_s"] = time.perf_counter() - t0
            ms = time_steps(lambda: step(inputs, targets), device, warmup=max(0, cfg.warmup_timing_steps - bool(cfg.compile)),
                            steps=cfg.timed_steps)
            summary.update(speed_numbers(summary, ms, device))
            summary["steps"] = cfg.warmup_timing_steps + cfg.timed_steps
            with sdpa_context(cfg.sdpa_backend):
                summary["sdpa_backend_seen"] = kernels_that_ran(lambda: step(inputs, targets), device)
        else:
            result, ms = train(cfg, step, data, gen, curve, progress, checkpoints)
            summary.update(speed_numbers(summary, ms, device))
            summary.update(result)
    except Exception as exc:  # every failure is a result row
        summary["status"] = "oom" if is_oom(exc) else "error"
        summary["message"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    finally:
        summary["wall_s"] = time.perf_counter() - t_run
        step = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return summary, curve


def train(cfg: RunConfig, step, data: Batches, gen: torch.Generator, curve: list[dict], progress=None,
          checkpoints: Checkpointing | None = None) -> tuple[dict[str, Any], list[float]]:
    """Train for cfg.budget_s seconds of training time (evaluation excluded) or cfg.max_steps, whichever
    comes first; with budget_s None, exactly cfg.max_steps steps, schedule and evaluations on steps.
    `step`: suite.step.Step, or any step with its interface (suite/jax_step.py). With `checkpoints`, the
    loop saves its state at their interval and resumes from the run's checkpoint if there is one
    (suite/checkpoint.py); `curve` then also holds the points recorded before.

    Returns the summary fields and the step times (ms) after warm-up.
    """
    eval_batches = [step.put(b) for b in data.evaluate()]
    spent = {"compile_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0}  # wall seconds outside the training clock
    first = data.sample(torch.Generator().manual_seed(cfg.seed + COMPILE_BATCH_SEED_OFFSET))
    spent["compile_s"] = step.warm_up(step.put(first), eval_batches)  # compiling, outside the clock
    budget = float("inf") if cfg.by_steps else cfg.budget_s
    out: dict[str, Any] = {"status": "ok"}
    ln_vocab = math.log(data.vocab_size)
    saved = checkpoints.load(cfg.run_id, world_size=step.world, data_hash=data.data_hash) if checkpoints else None
    if saved is not None:
        s = restore(saved, load_states=step.load_state, generator=gen)
    else:
        # evaluation points: training seconds, or (by steps) step counts, the same for every model
        s = LoopState(eval_points=[round(cfg.max_steps * (i + 1) / cfg.evals) for i in range(cfg.evals)]
                      if cfg.by_steps else [budget * (i + 1) / cfg.evals for i in range(cfg.evals)])
    out["resumed_from_step"] = s.n if saved is not None else None
    curve[:] = s.curve
    s.curve = curve

    def record(loss_now: float):
        t0 = time.perf_counter()
        eval_loss = step.evaluate(eval_batches)
        spent["eval_s"] += time.perf_counter() - t0
        curve.append({"run_id": cfg.run_id, "model": cfg.model, "objective": cfg.objective, "context": cfg.context,
                      "seed": cfg.seed, "step": s.n, "time_s": s.train_time, "tokens": s.n * cfg.batch_size * cfg.context,
                      "train_loss": loss_now, "eval_loss": eval_loss,
                      "eval_bpb": bits_per_byte(eval_loss, data.bytes_per_token)})
        return eval_loss

    def save():
        t0 = time.perf_counter()
        checkpoints.save(cfg.run_id, loop=s, states=step.state(), generator=gen,
                         data_hash=data.data_hash, world=step.world)
        spent["checkpoint_s"] += time.perf_counter() - t0

    shown = time.monotonic()
    while s.n < cfg.max_steps and s.train_time < budget:
        inputs, targets = step.put(data.sample(gen))
        step.sync()
        t0 = time.perf_counter()
        loss = step(inputs, targets, lr_factor(cfg, s.n, max(s.n / cfg.max_steps, s.train_time / budget)))
        loss_value = float(loss)  # synchronises
        dt = time.perf_counter() - t0
        if step.world > 1:  # data-parallel: the same numbers, so the same decisions, on every rank
            loss_value, dt = step.synced(loss, dt)
        s.train_time += dt
        s.ms.append(dt * 1e3)
        s.n += 1
        s.loss_value = loss_value
        if progress is not None:  # at the bar's own pace: often on a terminal, every ~30 s into a log file
            now = time.monotonic()
            redraw = now - shown >= getattr(progress, "mininterval", 0.1)
            shown = now if redraw else shown
            progress.set_postfix_str(f"{cfg.model} T={cfg.context} step {s.n}/{cfg.max_steps} loss {loss_value:.3f}",
                                     refresh=redraw)
        if s.initial is None:
            s.initial = loss_value
        if not math.isfinite(loss_value):
            out.update(status="nan", message=f"non-finite training loss at step {s.n}")
            break
        if s.n > cfg.warmup_steps and loss_value > max(2 * ln_vocab, s.initial + 2.0):
            out.update(status="diverged", message=f"training loss {loss_value:.2f} at step {s.n} (started at {s.initial:.2f})")
            break
        clock = s.n if cfg.by_steps else s.train_time
        if s.eval_points and clock >= s.eval_points[0]:
            while s.eval_points and clock >= s.eval_points[0]:
                s.eval_points.pop(0)
            record(loss_value)
        if checkpoints is not None and s.n < cfg.max_steps and checkpoints.due(s.n, step.world):
            save()
    if out["status"] == "ok" and (not curve or curve[-1]["step"] != s.n):
        record(s.loss_value)
    final_eval = curve[-1]["eval_loss"] if curve else float("nan")
    if out["status"] == "ok" and not math.isfinite(final_eval):
        out.update(status="nan", message="non-finite evaluation loss")
    tokens = s.n * cfg.batch_size * cfg.context
    out.update({"steps": s.n, "tokens": tokens, "train_time_s": s.train_time,
                "epochs": tokens / data.train_tokens if data.train_tokens else float("nan"),
                "final_train_loss": s.loss_value, "final_eval_loss": final_eval,
                "final_bpb": bits_per_byte(final_eval, data.bytes_per_token), **spent})
    skip = min(cfg.warmup_steps, 5, max(0, len(s.ms) - 1))  # the first steps carry one-off costs
    return out, s.ms[skip:]
