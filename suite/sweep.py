"""Expanding a preset into runs, checking them up front, and executing them resumably.

Under `torchrun`, each process takes its share of the runs (run i goes to rank i mod world size);
every finished run is one atomically written file in the results store, so processes never write
the same file, a killed sweep loses at most the runs in flight, and a restart skips what is done.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Iterable

from tqdm import tqdm

import implementations as impl

from . import peers
from .presets import PRESETS, Preset
from .runs import RunConfig
from .store import ResultsStore


class UsageError(ValueError):
    """Bad input from the user: reported as one line, exit status 2."""


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def expand(preset: Preset, *, models: list[str] | None = None, contexts: list[int] | None = None,
           objectives: list[str] | None = None, seeds: list[int] | None = None, variants: bool = True,
           with_peers: bool = False, **overrides: Any) -> list[RunConfig]:
    """All runs of a preset, narrowed by the flags; `overrides` replace RunConfig fields."""
    valid = impl.list_models()
    for m in models or []:
        if m not in valid and not peers.is_peer(m):
            raise UsageError(f"unknown model {m!r}; valid models: {', '.join(valid)}")
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise UsageError(f"unknown run setting(s) {bad}")
    chosen = models or preset.models
    groups = [(obj, ctxs) for obj, ctxs in preset.groups if not objectives or obj in objectives]
    if objectives:
        have = {obj for obj, _ in preset.groups}
        for obj in objectives:
            if obj not in have:  # an objective the preset lacks: use the preset's first context list
                groups.append((obj, preset.groups[0][1]))
    runs = []
    ours = [m for m in chosen if not peers.is_peer(m)]
    configs = [({}, ours)] + ([(v, [m for m in ms if m in chosen]) for ms, v in preset.variants] if variants else [])
    if with_peers or any(peers.is_peer(m) for m in chosen):
        configs += [(v, [m for m in ms if with_peers or m in chosen]) for ms, v in preset.peers]
        configs += [({}, [m for m in chosen if peers.is_peer(m) and not any(m in ms for ms, _ in preset.peers)])]
    for extra, ms in configs:
        for objective, ctxs in groups:
            if objective != "clm":
                ms = [m for m in ms if not peers.is_peer(m)]
            for context in contexts or ctxs:
                for model in ms:
                    for seed in seeds or preset.seeds:
                        kw = {**preset.base, **extra, **overrides}
                        try:
                            runs.append(RunConfig(model=model, context=context, objective=objective, seed=seed, **kw))
                        except ValueError as exc:
                            raise UsageError(str(exc)) from None
    unique = list({r.run_id: r for r in runs}.values())
    check(unique)
    return unique


def check(runs: Iterable[RunConfig]) -> None:
    """Refuse, before any work starts, a run that cannot be built (mode, override, context length)."""
    from .train import model_config

    for r in runs:
        try:
            if peers.is_peer(r.model):
                peers.check_peer(r.model, r.objective == "clm")
            model_config(r, r.vocab_size)
        except ValueError as exc:
            raise UsageError(f"{r.label()}: {exc}") from None


def distributed_share(runs: list[RunConfig]) -> tuple[list[RunConfig], int, int]:
    """This process's runs under torchrun (RANK / WORLD_SIZE), else all of them."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return runs[rank::world], rank, world


def execute(runs: list[RunConfig], store: ResultsStore, *, data_for=None, log=print) -> dict[str, int]:
    """Run what is not finished yet; returns counts by status (and 'skipped')."""
    done = store.finished()
    for line in store.quarantine_problems():
        log(f"warning: damaged results file: {line}")
    mine, rank, world = distributed_share(runs)
    todo = [r for r in mine if r.run_id not in done]
    counts = {"skipped": len(mine) - len(todo)}
    from .train import run as run_one

    bar = tqdm(todo, desc=f"runs (rank {rank}/{world})" if world > 1 else "runs", unit="run",
               file=sys.stderr, dynamic_ncols=True, disable=None)
    for cfg in bar:
        bar.set_postfix_str(cfg.label(), refresh=True)
        t0 = time.time()
        data = data_for(cfg) if (data_for is not None and cfg.kind == "train") else None
        summary, curve = run_one(cfg, data, progress=bar)
        summary["world_size"] = world
        store.write(summary, curve)
        counts[summary["status"]] = counts.get(summary["status"], 0) + 1
        log(f"[{time.strftime('%H:%M:%S')}] {cfg.label()}: {summary['status']} {summary['message']} "
            f"step {summary.get('step_ms_median', float('nan')):.1f} ms, peak {summary.get('peak_mem_gib', float('nan')):.1f} GiB, "
            f"run took {time.time() - t0:.0f} s")
    return counts
