"""One training step (forward, backward, clip, AdamW) and the held-out evaluation, eager or compiled,
single-process or data-parallel.

What the training loop (suite/train.py) asks of a step, whatever its backend (suite/jax_step.py has the
JAX one): `put(batch)` (a CPU batch onto the device), `warm_up(batch, eval_batches)` (compile outside the
clock; returns its seconds), `sync()` (wait for the device), `step(inputs, targets, lr_scale)` (the loss),
`evaluate(batches)`, `world` (processes training the run) with `synced(loss, dt)` when it is above 1,
and `state()` / `load_state(states)` (the model's and optimiser's states, for suite/checkpoint.py).
"""
from __future__ import annotations

import inspect
import time

import torch

from . import distributed as D
from .model import compile_model
from .objectives import IGNORE_INDEX as IGNORE
from .objectives import loss_fn
from .optim import make_optimizer
from .runs import RunConfig
from .timing import sdpa_context, synchronize


CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that record CUDA graphs


def fused_linear_cross_entropy():
    """Liger-Kernel's fused linear + cross-entropy (`loss="liger"`): (head weight, hidden [N, d], targets [N])
    -> mean loss over targets != IGNORE_INDEX, computed in chunks so that the logits are never all in memory."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    return LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE)


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
        self.fused_loss = fused_linear_cross_entropy() if cfg.loss == "liger" else None

    def state(self) -> dict:
        """The model's and the optimiser's states (suite/checkpoint.py saves them)."""
        return {"model": self.raw_model.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state(self, states: dict) -> None:
        self.raw_model.load_state_dict(states["model"])
        self.opt.load_state_dict(states["optimizer"])

    def new_graph_step(self) -> None:
        """Under a torch.compile mode that records CUDA graphs: tell them a new step begins, so that a replay
        may reuse the memory of the previous step's outputs (they were read before; without this, the
        second step failed with "accessing tensor output of CUDAGraphs that has been overwritten")."""
        if self.cfg.compile_mode in CUDAGRAPH_MODES:
            torch.compiler.cudagraph_mark_step_begin()

    def put(self, batch) -> tuple[torch.Tensor, ...]:
        """A batch of CPU tensors on the run's device."""
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def sync(self) -> None:
        synchronize(self.device)

    def warm_up(self, batch, eval_batches) -> float:
        """Compiled: one forward and backward (no update) and one evaluation batch, so that compiling happens
        outside the clock; returns the seconds it took (0 when eager)."""
        if not self.cfg.compile:
            return 0.0
        t0 = time.perf_counter()
        inputs, targets = batch
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            self.loss(self.model(inputs), targets).backward()
        self.opt.zero_grad(set_to_none=True)
        self.evaluate(eval_batches[:1], local=True)
        return time.perf_counter() - t0

    def synced(self, loss: torch.Tensor, dt: float) -> tuple[float, float]:
        """(loss, step seconds) averaged over the processes: the same numbers on every rank."""
        both = torch.stack([loss.float(), torch.tensor(dt, dtype=torch.float32, device=loss.device)])
        loss_mean, dt_mean = (D.all_reduce_sum(both) / self.world).tolist()
        return loss_mean, dt_mean

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, lr_scale: float = 1.0) -> torch.Tensor:
        self.new_graph_step()
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * lr_scale
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp), \
                sdpa_context(self.cfg.sdpa_backend):
            if self.fused_loss is None:
                loss = self.loss(self.model(inputs), targets)
            else:  # the head and the cross-entropy in one op: [B, T, vocab] logits never in memory at once
                hidden = self.raw_model.hidden(inputs)
                dtype = torch.bfloat16 if self.amp else hidden.dtype  # the head's matmul in bf16, as autocast's
                hidden = hidden.reshape(-1, hidden.shape[-1]).to(dtype)
                loss = self.fused_loss(self.raw_model.head.weight.to(dtype), hidden, targets.reshape(-1))
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
                self.new_graph_step()
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                n = int((targets != IGNORE).sum())
                total += float(self.loss(self.eval_model(inputs), targets)) * n
                count += n
        self.eval_model.train()
        if split:
            sums = D.all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64, device=self.device))
            total, count = sums.tolist()
        return total / max(count, 1)
