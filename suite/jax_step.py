"""One run on the JAX backend: suite/step.py and suite/train.py's loop for `implementations.jax` models.

    summary, curve = run_jax(cfg)          # cfg: a RunConfig; the same rows as suite.train.run

What is the same as the PyTorch run, by construction:
  * the model: the PyTorch model drawn from torch.manual_seed(seed), converted (implementations.jax);
  * the data: the same Batches, the same generator seeds, so the same batches in the same order;
  * AdamW: suite.optim's betas, its weight-decay groups (the parameters no_weight_decay names, mapped
    onto the JAX tree through the converter's layout), torch's epsilon, gradient clipping by the global
    norm with torch's coefficient max_norm / (norm + 1e-6), and suite.optim.lr_factor's warm-up + cosine
    schedule (on steps or on training time) applied as a learning rate passed to the step;
  * the loss: mean cross-entropy over targets != -100, in float32 over the logits;
  * the loop: suite.train.train itself (this module's JaxStep has the step interface of suite/step.py):
    the same stopping rules, evaluation points, non-finite and divergence checks, curve rows and fields.
What is JAX's own: one `jax.jit` step (forward, backward, clip, AdamW) with the parameters and the
optimiser state donated; compiled ahead of time outside the clock (`compile_s`); each step timed to
`block_until_ready` (the loss read back); precision "bf16" computes in bfloat16 on float32 masters
(implementations/jax/models.py); rematerialisation "auto" (the default) takes the first of no remat,
"dots", "full" whose compiled step fits the device by XLA's memory analysis (REMAT_AUTO); the layers are
unrolled (scan=False, the default): on the H200 the layer scan's carry copies and dynamic-update-slices took
~27 of FLASH's 89 ms per step at the quality size, 2K, and unrolling took the step to 54.9 ms (compiled
PyTorch: 58.5) and Transformer++'s from 61.8 to 43.5 ms (41.0), with less memory, for a compile of 20-30 s
instead of 8 s (results/nvidia-h200/jax/profile/; on the 2-core CPU unrolling is 4-8% faster too). Checkpoints
as on PyTorch (the parameters and optimiser state saved as host arrays); no data parallelism on this
backend. The row adds backend="jax", the JAX versions, platform, device kind,
matmul precision, the remat policy and scan flag, `compile_s` and `step_mem_gib` (XLA's compile-time
size of the step: arguments + outputs + temporaries - aliased), and peak_mem_gib from the device's
`peak_bytes_in_use` where the platform reports it. That peak is process-wide and JAX cannot reset it: a run
that stays below an earlier run's peak in the same process gets nan, with a message (`own_peak`), not the
earlier run's peak.

The JAX platform follows cfg.device ("cpu", "cuda[:i]"; JAX_PLATFORMS narrows what JAX loads). GPU
memory is not preallocated (XLA_PYTHON_CLIENT_PREALLOCATE=false unless set): honest memory numbers, and
PyTorch can share the GPU. Without preallocation XLA's allocator still stops at its memory fraction, 75% of the
card by default, so the fraction is raised to 95% unless set (XLA_CLIENT_MEM_FRACTION, or its older name
XLA_PYTHON_CLIENT_MEM_FRACTION). Under the 75% limit (60 GiB) FLASH's base-size step, 48.6 GiB at its peak
on an H200, failed to allocate its 47 GiB of temporaries on an 80 GB H100 that holds the PyTorch step.
"""
from __future__ import annotations

import dataclasses
import gc
import math
import os
import time
import warnings
from typing import Any, Callable

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if not {"XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION"} & set(os.environ):
    os.environ["XLA_CLIENT_MEM_FRACTION"] = "0.95"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

import implementations as impl  # noqa: E402
from implementations import jax as impl_jax  # noqa: E402

from . import distributed as D  # noqa: E402
from .batches import Batches, random_batches  # noqa: E402
from .model import build, model_config  # noqa: E402
from .objectives import IGNORE_INDEX  # noqa: E402
from .optim import ADAM_BETAS, no_weight_decay  # noqa: E402
from .runs import RunConfig  # noqa: E402
from .summary import base_summary, speed_numbers  # noqa: E402
from .timing import is_oom  # noqa: E402
from .checkpoint import Checkpointing  # noqa: E402
from .train import BATCH_SEED_OFFSET, train  # noqa: E402

ADAM_EPS = 1e-8   # torch.optim.AdamW's default
CLIP_EPS = 1e-6   # torch.nn.utils.clip_grad_norm_: coefficient max_norm / (total_norm + 1e-6), at most 1
COMPUTE_DTYPES = {"fp32": None, "bf16": "bfloat16"}  # RunConfig.precision -> implementations.jax dtype
# the columns a JAX row adds to a PyTorch row
JAX_FIELDS = ("jax_version", "jaxlib_version", "jax_platform", "jax_device_kind", "matmul_precision", "jax_remat",
              "jax_scan", "compile_s", "step_mem_gib", "peak_mem_gib")
# remat "auto": the first of these policies whose compiled step fits in FIT_FRACTION of the device's memory
# (XLA's compile-time analysis; the rest is left to the allocator's fragmentation and the loss's buffers).
# No rematerialisation is fastest; "dots" keeps the dense layers' outputs and recomputes the attention;
# "full" recomputes each layer from its input. Estimated by this analysis on the CPU (bf16, 65,536 tokens):
# FLASH at the base size and 2K needs ~145 GiB without remat, ~50 GiB with "dots", ~27 GiB with "full".
REMAT_AUTO = ("none", "dots", "full")
FIT_FRACTION = 0.9


def jax_device(device: str) -> jax.Device:
    """The JAX device of a run's device string: "cpu", "cuda" or "cuda:i" (a GPU of JAX's "gpu" platform)."""
    kind, _, index = device.partition(":")
    platform = {"cpu": "cpu", "cuda": "gpu"}.get(kind)
    if platform is None:
        raise ValueError(f"the JAX backend runs on cpu or cuda[:i], not {device!r}")
    devices = jax.devices(platform)
    i = int(index or 0)
    if i >= len(devices):
        raise ValueError(f"device {device!r}: JAX sees {len(devices)} {platform} device(s)")
    return devices[i]


def decay_mask(model: torch.nn.Module, model_cfg: impl.ModelConfig) -> Any:
    """The JAX tree of booleans: True where AdamW decays (every parameter suite.optim.no_weight_decay keeps)."""
    skip = no_weight_decay(model)
    named = dict(model.named_parameters())

    def decayed(names: tuple[str, ...]) -> bool:
        flags = {id(named[n]) not in skip for n in names}
        if len(flags) != 1:
            raise ValueError(f"the stacked parameters {names[0]}, ... are decayed in some layers only")
        return flags.pop()

    return impl_jax.map_sources(decayed, impl_jax.layout(model_cfg)[0])


def loss_fn(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean cross-entropy over targets != -100, their count), in at least float32 (objectives.loss_fn).

    The target's logit is picked by a one-hot product, not a gather: XLA fuses it into the reductions over
    the vocabulary, and its gradient into softmax - one_hot, with no scatter into a [B, T, vocab] buffer."""
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    valid = targets != IGNORE_INDEX
    picked = (logits * jax.nn.one_hot(targets, logits.shape[-1], dtype=logits.dtype)).sum(-1)
    nll = jnp.where(valid, jax.nn.logsumexp(logits, axis=-1) - picked, 0.0)
    n = valid.sum()
    return nll.sum() / jnp.maximum(n, 1), n


def clip_by_global_norm(grads: Any, max_norm: float) -> Any:
    """torch.nn.utils.clip_grad_norm_'s clipping: grads * min(1, max_norm / (||grads|| + 1e-6))."""
    coef = jnp.minimum(1.0, max_norm / (optax.global_norm(grads) + CLIP_EPS))
    return jax.tree.map(lambda g: g * coef.astype(g.dtype), grads)


def to_jax(batch, device: jax.Device) -> tuple[jax.Array, ...]:
    """A (inputs, targets) batch of CPU torch tensors as int32 arrays on the device (copied)."""
    return tuple(jax.device_put(np.asarray(t.numpy(), dtype=np.int32), device) for t in batch)


class JaxStep:
    """One jitted training step (forward, backward, clip, AdamW) and the held-out evaluation.

    The optimiser is torch's AdamW in optax terms: Adam moments (suite.optim.ADAM_BETAS, eps 1e-8), plus
    weight_decay * p on the decayed parameters, times the learning rate cfg.lr * lr_scale passed in."""

    def __init__(self, apply: Callable, params: Any, cfg: RunConfig, mask: Any, device: jax.Device):
        self.apply, self.cfg, self.device = apply, cfg, device
        self.tx = optax.chain(optax.scale_by_adam(*ADAM_BETAS, eps=ADAM_EPS),
                              optax.add_decayed_weights(cfg.weight_decay, mask))
        self.params = jax.device_put(params, device)
        self.opt_state = jax.device_put(self.tx.init(self.params), device)
        self.lr_dtype = np.dtype(jax.tree.leaves(params)[0].dtype)
        self._jit_step = jax.jit(self._step, donate_argnums=(0, 1))
        self._jit_eval = jax.jit(lambda p, x, y: loss_fn(self.apply(p, x), y))
        self._compiled: dict[tuple, Any] = {}
        self.compile_s = 0.0
        self.step_mem_bytes: float = math.nan

    def _step(self, params, opt_state, inputs, targets, lr):
        (loss, _), grads = jax.value_and_grad(lambda p: loss_fn(self.apply(p, inputs), targets), has_aux=True)(params)
        if self.cfg.grad_clip:
            grads = clip_by_global_norm(grads, self.cfg.grad_clip)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr.astype(p.dtype) * u, params, updates)
        return params, opt_state, loss

    def _get(self, kind: str, *args):
        """The compiled step (args: params, opt_state, inputs, targets, lr) or evaluation (params, inputs,
        targets) for these batch shapes, compiled ahead of time on first use (the time goes to compile_s)."""
        inputs, targets = args[-3:-1] if kind == "step" else args[-2:]
        key = (kind, inputs.shape, targets.shape)
        if key not in self._compiled:
            t0 = time.perf_counter()
            compiled = (self._jit_step if kind == "step" else self._jit_eval).lower(*args).compile()
            self.compile_s += time.perf_counter() - t0
            if kind == "step":
                self.step_mem_bytes = compiled_bytes(compiled)
            self._compiled[key] = compiled
        return self._compiled[key]

    world = 1  # one process (no data parallelism on this backend)

    def state(self) -> dict:
        """The parameters and the optimiser's state on the host, as NumPy trees (suite/checkpoint.py)."""
        return {"params": jax.device_get(self.params), "opt_state": jax.device_get(self.opt_state)}

    def load_state(self, states: dict) -> None:
        self.params = jax.device_put(states["params"], self.device)
        self.opt_state = jax.device_put(states["opt_state"], self.device)

    def put(self, batch) -> tuple[jax.Array, ...]:
        """A batch of CPU torch tensors on the run's JAX device."""
        return to_jax(batch, self.device)

    def sync(self) -> None:
        """Nothing to wait for: each step's loss is read back (float) before the next one starts."""

    def warm_up(self, batch, eval_batches) -> float:
        """Compile the step and the evaluation outside the clock; returns the seconds spent compiling so far."""
        return self.compile(*batch, eval_batches)

    def lr(self, lr_scale: float) -> np.ndarray:
        return np.asarray(self.cfg.lr * lr_scale, dtype=self.lr_dtype)

    def compile(self, inputs, targets, eval_batches=()) -> float:
        """Compile the step (and the evaluation for each shape of `eval_batches`) outside the clock."""
        self._get("step", self.params, self.opt_state, inputs, targets, self.lr(1.0))
        for x, y in eval_batches:
            self._get("eval", self.params, x, y)
        return self.compile_s

    def __call__(self, inputs, targets, lr_scale: float = 1.0) -> jax.Array:
        """One training step; returns the loss (a device scalar: float() of it waits for the step)."""
        lr = self.lr(lr_scale)
        step = self._get("step", self.params, self.opt_state, inputs, targets, lr)
        with warnings.catch_warnings():  # platforms that cannot donate (the CPU in some versions) say so
            warnings.filterwarnings("ignore", message=".*donated buffers were not usable.*")
            self.params, self.opt_state, loss = step(self.params, self.opt_state, inputs, targets, lr)
        return loss

    def evaluate(self, batches) -> float:
        """Mean held-out loss per predicted token over device batches [(inputs, targets), ...]."""
        total, count = 0.0, 0
        for x, y in batches:
            loss, n = self._get("eval", self.params, x, y)(self.params, x, y)
            n = int(n)
            total += float(loss) * n
            count += n
        return total / max(count, 1)


def compiled_bytes(compiled) -> float:
    """XLA's compile-time memory of a compiled function: arguments + outputs + temporaries - aliased."""
    try:
        m = compiled.memory_analysis()
        return float(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)
    except Exception:  # platforms without the analysis
        return math.nan


def memory_limit(device: jax.Device) -> float:
    """The bytes the device lets XLA allocate (nan where the platform does not say: the CPU)."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return float(stats["bytes_limit"]) if stats and "bytes_limit" in stats else math.nan


def peak_bytes(device: jax.Device) -> float:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return float(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else math.nan


def own_peak(before: float, after: float) -> float:
    """A run's peak bytes from the process-wide peak before and after it: `after` where the run set a new peak
    (or nothing was allocated before it), nan where it stayed at or below an earlier run's (its own peak is
    then unknown: at most `before`)."""
    return after if not before > 0 or after > before else math.nan


def jax_fields(device: jax.Device | None) -> dict[str, Any]:
    """The columns that say how a JAX run ran (platform and device kind empty before a device is found)."""
    import jaxlib

    return {"compile_mode": "jit", "jax_version": jax.__version__,
            "jaxlib_version": jaxlib.__version__, "jax_platform": device.platform if device else "",
            "jax_device_kind": device.device_kind if device else "",
            "matmul_precision": str(jax.config.jax_default_matmul_precision or "default")}


def run_jax(cfg: RunConfig, data: Batches | None = None, progress=None, *, remat: str = "auto",
            scan: bool = False, sdpa: str | None = None,
            checkpoints: Checkpointing | None = None) -> tuple[dict[str, Any], list[dict]]:
    """Execute one run on JAX; returns (summary row, learning curve rows) like suite.train.run.

    kind "speed": time cfg.timed_steps steps after cfg.warmup_timing_steps on one random batch; kind
    "train": the training loop of suite.train.train. `remat`, `scan`, `sdpa` (the softmax models' fused
    attention: None for the platform's choice, "cudnn" or "xla"): implementations.jax's knobs; remat
    "auto" compiles the step with each of REMAT_AUTO in turn and keeps the first that fits the device
    (the row's jax_remat says which; compile_s counts every compile).
    Every failure (out of memory, a non-finite loss, an error) is a result row, never raised."""
    cfg = dataclasses.replace(cfg, backend="jax")  # a run of this backend, whatever the caller's config said
    data = data if data is not None else random_batches(cfg)
    model_cfg = model_config(cfg, data.vocab_size)
    summary = base_summary(cfg, model_cfg, torch.device(D.resolve_device(cfg.device)), data)
    summary.update({**jax_fields(None), "jax_remat": remat, "jax_scan": scan, "compile_s": math.nan,
                    "step_mem_gib": math.nan, "peak_mem_gib": math.nan})
    curve: list[dict] = []
    step = None
    earlier_compile_s = 0.0  # remat "auto": compiling the policies that did not fit
    t_run = time.perf_counter()
    try:
        device = jax_device(cfg.device)
        summary.update(jax_fields(device))
        peak_before = peak_bytes(device)
        torch_model = build(model_cfg, cfg.seed, torch.device("cpu"))
        summary["n_params"] = sum(p.numel() for p in torch_model.parameters())
        mask = decay_mask(torch_model, model_cfg)
        batch = jax.ShapeDtypeStruct((cfg.batch_size, cfg.context), jnp.int32)  # what the step is compiled for
        policies = REMAT_AUTO if remat == "auto" else (remat,)
        for policy in policies:
            apply, params = impl_jax.from_torch(torch_model, model_cfg, dtype=COMPUTE_DTYPES[cfg.precision],
                                                remat=policy, scan=scan, platform=device.platform, sdpa=sdpa)
            step = JaxStep(apply, params, cfg, mask, device)
            del params
            step.compile(batch, batch)
            if policy == policies[-1] or not step.step_mem_bytes > FIT_FRACTION * memory_limit(device):
                break
            earlier_compile_s += step.compile_s  # does not fit: the next policy
            step = None
        summary["jax_remat"] = policy
        del torch_model
        gen = torch.Generator().manual_seed(cfg.seed + BATCH_SEED_OFFSET)
        if cfg.kind == "speed":
            inputs, targets = to_jax(data.sample(gen), device)
            step.compile(inputs, targets)
            ms = time_steps(lambda: step(inputs, targets), warmup=cfg.warmup_timing_steps, steps=cfg.timed_steps)
            summary.update(speed_numbers(summary, ms, torch.device("cpu")))
            summary["steps"] = cfg.warmup_timing_steps + cfg.timed_steps
            summary["sdpa_backend_seen"] = apply.info["attention_implementation"]  # what suite.train.run reports
        else:
            result, ms = train(cfg, step, data, gen, curve, progress, checkpoints)
            result.pop("compile_s", None)  # the step's own count (every remat policy tried) is set below
            summary.update(speed_numbers(summary, ms, torch.device("cpu")))
            summary.update(result)
        summary["peak_mem_gib"] = own_peak(peak_before, peak_bytes(device)) / 2**30
        if math.isnan(summary["peak_mem_gib"]) and peak_before > 0:
            summary["message"] = (f"peak memory unknown: at most {peak_before / 2**30:.1f} GiB, an earlier run's peak in "
                                  "this process (JAX cannot reset it); step_mem_gib is XLA's size of the step")
    except Exception as exc:  # every failure is a result row
        summary["status"] = "oom" if is_oom(exc) or "RESOURCE_EXHAUSTED" in str(exc) else "error"
        summary["message"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    finally:
        summary["wall_s"] = time.perf_counter() - t_run
        if step is not None:
            summary["compile_s"] = step.compile_s + earlier_compile_s
            summary["step_mem_gib"] = step.step_mem_bytes / 2**30
        step = None
        gc.collect()
    return summary, curve


def time_steps(step: Callable[[], jax.Array], *, warmup: int, steps: int) -> list[float]:
    """Milliseconds per step after `warmup` untimed steps, each timed to its result being ready."""
    for _ in range(warmup):
        step().block_until_ready()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step().block_until_ready()
        times.append((time.perf_counter() - t0) * 1e3)
    return times
