"""Checkpoints of a training run, so that a run outlasts the job it started in.

A checkpoint holds everything the loop needs to continue as if it had never stopped: the step's state
(the model's and the optimiser's: `step.state()`, put back by `step.load_state()`; PyTorch state dicts, or
JAX arrays brought to the host), the loop's own state (`LoopState`: steps taken, training seconds, step times, the
learning curve so far, the evaluation points still ahead, the first loss), the state of the batch
generator of every process, and PyTorch's global random states. It is written at a set interval
(`Checkpointing.every_steps` steps and/or `every_s` seconds of wall time) to
`<folder>/<run_id>.pt`, atomically (a temporary file, then a rename), by the main process alone.
A run that finds its checkpoint resumes from it: its curve continues without a gap or a repeated
step (tests/test_checkpoint.py kills a run and compares). A finished run's checkpoint is removed once
its result is recorded; `--fresh` removes those of the runs it measures again.

A checkpoint is refused (and the run starts from step 0, with a warning) when it was written by a
different number of processes or for different data (data hash).
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import distributed as D

FORMAT = "flash-repro-checkpoint/1"
DEFAULT_EVERY_S = 600.0  # wall-clock seconds between checkpoints unless told otherwise


@dataclass
class LoopState:
    """The training loop's own state (suite/train.py): what a resumed run must start from."""

    n: int = 0                                     # steps taken
    train_time: float = 0.0                        # training seconds so far (evaluation excluded)
    loss_value: float = float("nan")               # the last training loss
    initial: float | None = None                   # the first training loss (divergence check)
    ms: list[float] = field(default_factory=list)  # every step's time (ms)
    curve: list[dict] = field(default_factory=list)
    eval_points: list[float] = field(default_factory=list)  # the evaluations still ahead (steps or seconds)


@dataclass
class Checkpointing:
    """Where and how often a run saves its checkpoint. `every_steps`: every so many steps; `every_s`:
    every so many seconds of wall time (evaluation included); either may be None (not that way)."""

    folder: Path
    every_steps: int | None = None
    every_s: float | None = DEFAULT_EVERY_S

    def __post_init__(self):
        self.folder = Path(self.folder)
        if self.every_steps is not None and self.every_steps < 1:
            raise ValueError(f"checkpoint interval must be at least 1 step, got {self.every_steps}")
        if self.every_s is not None and not self.every_s > 0:
            raise ValueError(f"checkpoint interval must be a positive number of seconds, got {self.every_s}")
        self._last_save = time.monotonic()

    def path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}.pt"

    def due(self, step: int, world: int = 1) -> bool:
        """Whether a checkpoint is due after `step` steps. A data-parallel run (`world` processes training
        it) gets the same answer on every process: the main process decides the wall-clock interval."""
        by_steps = self.every_steps is not None and step % self.every_steps == 0
        by_time = self.every_s is not None and time.monotonic() - self._last_save >= self.every_s
        if world > 1 and self.every_s is not None:
            by_time = bool(D.broadcast_object(by_time))
        return by_steps or by_time

    def remove(self, run_id: str) -> None:
        """Remove the run's checkpoint (its result is recorded). The folder stays: other processes of a
        sweep may be writing theirs into it."""
        self.path(run_id).unlink(missing_ok=True)

    def save(self, run_id: str, *, loop: LoopState, states: dict[str, Any], generator: torch.Generator,
             data_hash: str, world: int = 1) -> Path | None:
        """Write the checkpoint. A data-parallel run (`world` processes) must call it on every process: the
        batch generators of all are gathered and the main process writes. Returns the path written, or
        None on the other processes."""
        gens = D.all_gather_object(generator.get_state()) if world > 1 else [generator.get_state()]
        self._last_save = time.monotonic()
        if world > 1 and D.rank() != 0:
            return None
        state = {
            "format": FORMAT, "run_id": run_id, "world_size": len(gens), "data_hash": data_hash,
            "loop": asdict(loop), "states": states,
            "generators": gens, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "saved_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        path = self.path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def load(self, run_id: str, *, world_size: int, data_hash: str) -> dict[str, Any] | None:
        """The run's checkpoint if there is one it can resume from (same processes, same data), else None."""
        path = self.path(run_id)
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a damaged file: start again rather than fail the run
            warnings.warn(f"checkpoint {path} is unreadable ({exc.__class__.__name__}); the run starts from step 0")
            return None
        problem = None
        if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("run_id") != run_id:
            problem = "not a checkpoint of this run"
        elif state["world_size"] != world_size:
            problem = f"written by {state['world_size']} processes, this run has {world_size}"
        elif state["data_hash"] != data_hash:
            problem = f"written for data {state['data_hash']!r}, the data is now {data_hash!r}"
        if problem:
            warnings.warn(f"checkpoint {path} is {problem}; the run starts from step 0")
            return None
        return state


def restore(state: dict[str, Any], *, load_states, generator: torch.Generator) -> LoopState:
    """Put a checkpoint's states back (this process's batch generator) and return the loop's state."""
    load_states(state["states"])
    gens = state["generators"]
    generator.set_state(gens[D.rank()] if len(gens) > 1 else gens[0])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return LoopState(**state["loop"])
