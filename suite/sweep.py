"""Expanding a preset into runs, checking them up front, and executing them resumably.

Under `torchrun`, each process takes its share of the runs (run i goes to rank i mod world size)
on its own GPU (cuda:LOCAL_RANK); every finished run is one atomically written file in the results
store, so processes never write the same file, and a restart skips what is done; with checkpoints
(suite/checkpoint.py) a killed sweep loses at most the steps since each run's last checkpoint, and a
restart resumes the runs in flight from theirs. With `ddp=True` every process takes part in every run instead
(data-parallel training, DistributedDataParallel) and rank 0 alone writes the results.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys
import time
from typing import Any, Iterable

from tqdm import tqdm

import implementations as impl

from . import distributed as D
from .checkpoint import Checkpointing
from .presets import PRESETS, Preset
from .runs import RunConfig
from .store import ResultsStore
from .timing import host_threads


class UsageError(ValueError):
    """Bad input from the user: reported as one line, exit status 2."""


# RunConfig fields a user sets through a flag of its own: messages name the flag, not the field
FIELD_FLAGS = {"tokens_per_step": "--tokens-per-step", "budget_s": "--budget", "max_steps": "--steps",
               "bpe_vocab": "--bpe-vocab", "sdpa_backend": "--sdpa-backend", "compile_mode": "--compile-mode",
               "timed_steps": "--timed-steps"}


FRESH_MARKER = ".fresh-sweep.json"   # a --fresh sweep under way in a results folder (see execute)
RETRIED = ("error", "oom")           # statuses that --retry-failed measures again
LOG_PROGRESS_S = 30.0                # seconds between progress lines when stderr is a file, not a terminal


class LogLines:
    """The progress of a sweep as plain lines on stderr, for logs: `[time] runs i/n: text` when a run
    starts and at most every `mininterval` seconds while it trains (what tqdm shows on a terminal)."""

    def __init__(self, items: list, desc: str, mininterval: float = LOG_PROGRESS_S):
        self.items, self.desc, self.mininterval, self.done = items, desc, mininterval, 0

    def __iter__(self):
        for self.done, item in enumerate(self.items):
            yield item
        self.done = len(self.items)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        if refresh:
            print(f"[{time.strftime('%H:%M:%S')}] {self.desc} {self.done}/{len(self.items)}: {text}",
                  file=sys.stderr, flush=True)


def flag_words(message: str) -> str:
    """A message of RunConfig's validation with its field names replaced by the flags that set them."""
    for name, flag in FIELD_FLAGS.items():
        message = re.sub(rf"\b{name}\b", flag, message)
    return re.sub(r"^context (\d+)", r"--contexts \1:", message)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def expand(preset: Preset, *, models: list[str] | None = None, contexts: list[int] | None = None,
           objectives: list[str] | None = None, seeds: list[int] | None = None, variants: bool = True,
           with_peers: bool = False, **settings: Any) -> list[RunConfig]:
    """All runs of a preset, narrowed by the flags; `settings` replace RunConfig fields (its field
    `overrides`, the model options, is merged with a variant's rather than replacing them)."""
    valid = impl.list_models()
    for m in models or []:
        if m not in valid and not impl.is_peer(m):
            raise UsageError(f"unknown model {m!r}; valid models: {', '.join(valid)}")
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    bad = sorted(set(settings) - fields)
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
    ours = [m for m in chosen if not impl.is_peer(m)]
    configs = [({}, ours)] + ([(v, [m for m in ms if m in chosen]) for ms, v in preset.variants] if variants else [])
    if with_peers or any(impl.is_peer(m) for m in chosen):
        configs += [(v, [m for m in ms if with_peers or m in chosen]) for ms, v in preset.peers]
        configs += [({}, [m for m in chosen if impl.is_peer(m) and not any(m in ms for ms, _ in preset.peers)])]
    for extra, ms in configs:
        for objective, ctxs in groups:
            if objective != "clm":
                ms = [m for m in ms if not impl.is_peer(m)]
            for context in contexts or ctxs:
                for model in ms:
                    for seed in seeds or preset.seeds_of(model):
                        kw = {**preset.base, **preset.lr_of(model, objective, context), **extra, **settings}
                        if "overrides" in extra and "overrides" in settings:  # model options: merge
                            kw["overrides"] = tuple({**dict(extra["overrides"]), **dict(settings["overrides"])}.items())
                        try:
                            runs.append(RunConfig(model=model, context=context, objective=objective, seed=seed, **kw))
                        except ValueError as exc:
                            raise UsageError(flag_words(str(exc))) from None
    unique = list({r.run_id: r for r in runs}.values())
    check(unique)
    return unique


def check(runs: Iterable[RunConfig]) -> None:
    """Refuse, before any work starts, a run that cannot be built (mode, override, context length)."""
    from .model import model_config

    for r in runs:
        spec = impl.describe(r.model)  # a peer's optional package, from its registry entry
        package = spec.requires if spec is not None else ""
        if package and importlib.util.find_spec(package) is None:
            raise UsageError(f"{r.label()}: the peer {r.model!r} needs the Python package {package!r}, which is not "
                             f"installed (pip install {spec.pip_name or package}); or leave the peer out "
                             "(--models without it, no --peers)")
        try:
            model_config(r, r.vocab_size)
        except ValueError as exc:
            raise UsageError(f"{r.label()}: {flag_words(str(exc))}") from None


def distributed_share(runs: list[RunConfig], rank: int | None = None, world: int | None = None, *,
                       ddp: bool = False) -> tuple[list[RunConfig], int, int]:
    """(this process's runs, rank, world size). Sharding (the default under torchrun): run i goes to
    rank i mod world size, a fixed assignment that does not depend on what is already finished, so
    no two processes ever take the same run. With `ddp`, or without torchrun: all of them.
    `rank` and `world` default to torchrun's RANK and WORLD_SIZE."""
    rank = D.rank() if rank is None else rank
    world = D.world_size() if world is None else world
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world} process(es)")
    return (list(runs) if ddp else runs[rank::world]), rank, world


def check_ddp(runs: Iterable[RunConfig], world: int) -> None:
    """Refuse, up front, a data-parallel run whose batch does not split evenly over the processes."""
    for r in runs:
        if r.batch_size % world:
            raise UsageError(f"{r.label()}: --ddp splits the batch of {r.batch_size} sequences "
                             f"(tokens per step {r.tokens_per_step} / context {r.context}) over {world} processes; "
                             f"choose --tokens-per-step so that the batch is a multiple of {world}")


def data_key(cfg: RunConfig) -> tuple[str, str, int]:
    """What a train run's data (and so its data hash) depends on among its settings."""
    return (cfg.corpus, cfg.tokenizer, cfg.bpe_vocab)


def _fresh_start(store: ResultsStore, run_ids: list[str], log) -> float:
    """The start of the --fresh sweep of these runs in this folder: the modification time of the marker
    file of an interrupted --fresh sweep of the same selection (which this one resumes; the file system's
    clock, as the records'), else infinity after writing a new marker. Records written before it are
    superseded, those written since are kept."""
    from .store import atomic_write_text

    path = store.folder / FRESH_MARKER
    ids = sorted(set(run_ids))
    try:
        marker = json.loads(path.read_text())
        if isinstance(marker, dict) and marker.get("run_ids") == ids:
            log(f"--fresh: resuming the --fresh sweep started {marker.get('started_utc', '?')}; the runs it "
                "already measured are kept")
            return path.stat().st_mtime
    except (OSError, ValueError):
        pass
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write_text(path, json.dumps({"started_utc": stamp, "run_ids": ids}, indent=1))
    return float("inf")  # a new --fresh sweep: every record there is older than it


def _clear_fresh_marker(store: ResultsStore, run_ids: list[str]) -> None:
    """The sweep of these runs is complete: a --fresh sweep of them is no longer under way."""
    path = store.folder / FRESH_MARKER
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(marker, dict) and marker.get("run_ids") == sorted(set(run_ids)):
        path.unlink(missing_ok=True)


def _to_measure_again(runs: list[RunConfig], store: ResultsStore, *, fresh: bool, retry_failed: bool,
                      data_hashes: dict | None, log, checkpoints: Checkpointing | None = None) -> None:
    """Rank 0, before anyone trains: move damaged files aside, and supersede the records of the runs that
    are to be measured again: with --fresh those written before the --fresh sweep started, with
    --retry-failed those that failed (error, oom), and every train run whose data changed since."""
    records = {r["summary"]["run_id"]: r["summary"] for r in store.records()}
    for line in store.quarantine_problems():
        log(f"warning: damaged results file: {line}")
    start = _fresh_start(store, [r.run_id for r in runs], log) if fresh else None
    if start is not None and checkpoints is not None:  # --fresh starts runs again, unless this sweep saved them
        for cfg in runs:
            path = checkpoints.path(cfg.run_id)
            if path.exists() and path.stat().st_mtime < start:
                path.unlink(missing_ok=True)
    why: dict[str, str] = {}
    for cfg in runs:
        summary = records.get(cfg.run_id)
        if summary is None or cfg.run_id in why:
            continue
        if start is not None:
            try:
                if store.path(cfg.run_id).stat().st_mtime < start:
                    why[cfg.run_id] = "--fresh"
                    continue
            except OSError:
                continue
        if retry_failed and summary.get("status") in RETRIED:
            why[cfg.run_id] = "--retry-failed"
            continue
        recorded = summary.get("data_hash")
        now = (data_hashes or {}).get(data_key(cfg))
        if cfg.kind == "train" and recorded and now and recorded != now:
            why[cfg.run_id] = "data"
            log(f"{cfg.label()}: its data changed since it was recorded (data hash {recorded}, now {now} for "
                f"corpus {cfg.corpus!r}): measuring it again")
    if not why:
        return
    moved = store.supersede(list(why))
    if moved:
        reasons = {k: sum(1 for v in why.values() if v == k) for k in dict.fromkeys(why.values())}
        detail = ", ".join(f"{n} {'(data changed)' if k == 'data' else k}" for k, n in reasons.items())
        log(f"{len(moved)} earlier results moved to {moved[0].parent} to be measured again: {detail}")


def execute(runs: list[RunConfig], store: ResultsStore, *, data_for=None, log=print,
            ddp: bool = False, fresh: bool = False, retry_failed: bool = False,
            data_hashes: dict[tuple[str, str, int], str] | None = None,
            checkpoints: Checkpointing | None = None) -> dict[str, int]:
    """Run what is not finished yet; returns counts by status (and 'skipped').

    Finished runs are measured again (their records superseded, see ResultsStore.supersede) with
    `fresh` (all of them: those written before this --fresh sweep started, so that re-running an
    interrupted --fresh sweep resumes it), with `retry_failed` (those whose status is error or oom),
    and when a train run's recorded data hash differs from `data_hashes[data_key(run)]` (its data
    changed). `checkpoints`: train runs save their state there and resume from it
    (suite/checkpoint.py); a run's checkpoint is removed once its result is recorded, and --fresh
    removes those older than its sweep. Under torchrun the process group must be initialised (suite.distributed.init_from_env)
    on every rank before this is called; every rank must call it.
    """
    rank, world = D.rank(), D.world_size()
    if ddp and world > 1 and not D.is_initialized():
        raise RuntimeError("data-parallel execution needs the process group: call suite.distributed.init_from_env() first")
    if rank == 0:  # one process moves damaged files aside and supersedes records, before anyone writes
        _to_measure_again(runs, store, fresh=fresh, retry_failed=retry_failed, data_hashes=data_hashes, log=log,
                          checkpoints=checkpoints)
    D.barrier()
    done = store.finished()
    mine, rank, world = distributed_share(runs, rank, world, ddp=ddp)
    todo = [r for r in mine if r.run_id not in done]
    if ddp and world > 1:  # every rank must take part in the same runs: rank 0's view of the store decides
        todo = [r for r in mine if r.run_id in set(D.broadcast_object([r.run_id for r in todo]))]
    counts = {"skipped": len(mine) - len(todo)}
    from .train import run as run_one

    quiet = ddp and rank != 0  # in data-parallel runs rank 0 speaks for all
    desc = f"runs (rank {rank}/{world})" if world > 1 and not ddp else "runs"
    if sys.stderr.isatty() or quiet:  # a live bar on a terminal
        bar = tqdm(todo, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True, disable=quiet)
    else:  # into a log file (a background job): plain lines, one every LOG_PROGRESS_S seconds
        bar = LogLines(todo, desc)
    recorded = []  # (summary, curve) of the runs this process recorded
    for cfg in bar:
        bar.set_postfix_str(cfg.label(), refresh=True)
        t0 = time.time()
        data = None
        if data_for is not None and cfg.kind == "train":
            # each rank draws its part of the global batch: tokens_per_step / world tokens
            data = data_for(dataclasses.replace(cfg, tokens_per_step=cfg.tokens_per_step // world)
                            if ddp and world > 1 else cfg)
        with host_threads(cfg.device):
            if cfg.backend == "jax":  # imported only when used: it loads jax
                from .jax_step import run_jax
                summary, curve = run_jax(cfg, data, progress=bar, checkpoints=checkpoints)
            else:
                summary, curve = run_one(cfg, data, progress=bar, ddp=ddp, checkpoints=checkpoints)
        summary["rank"] = rank
        if ddp and world > 1:
            summary.update(_agree_on_status(summary))
        else:
            summary["world_size"] = 1  # processes that trained this run (not the size of the launch)
        if not ddp or rank == 0:
            store.write(summary, curve)
            recorded.append((summary, curve))
            if checkpoints is not None:
                checkpoints.remove(cfg.run_id)
        counts[summary["status"]] = counts.get(summary["status"], 0) + 1
        if not quiet:
            log(f"[{time.strftime('%H:%M:%S')}] {cfg.label()}: {summary['status']} {summary['message']} "
                f"step {summary.get('step_ms_median', float('nan')):.1f} ms, "
                f"peak {summary.get('peak_mem_gib', float('nan')):.1f} GiB, run took {time.time() - t0:.0f} s"
                + (f" (rank {rank}/{world})" if world > 1 and not ddp else ""))
    if world > 1 and not ddp:
        _collect_on_main(store, recorded, counts)
    if rank == 0:  # every run of the selection is measured now (the collect above waited for the others)
        _clear_fresh_marker(store, [r.run_id for r in runs])
    return counts


def _agree_on_status(summary: dict[str, Any]) -> dict[str, Any]:
    """Data-parallel run: a failure on any rank is the run's outcome (rank 0 writes the record)."""
    seen = D.all_gather_object((summary["status"], summary["message"]))
    for r, (status, message) in enumerate(seen):
        if status != "ok":
            return {"status": status, "message": f"rank {r}: {message}" if r else message}
    return {}


def _collect_on_main(store: ResultsStore, fresh: list, counts: dict[str, int]) -> None:
    """Sharded sweep: rank 0 gets every rank's new records and writes those its results folder lacks,
    so the report is complete when the nodes of a multi-node launch share no file system (on one
    node, or on a shared file system, the files are already there). Rank 0's counts become the
    sweep's. Every rank must call this."""
    gathered = D.gather_to_main({"records": fresh, "counts": counts})
    if gathered is None:
        return
    for r, part in enumerate(gathered):
        if r == 0:
            continue
        for summary, curve in part["records"]:
            if not store.path(summary["run_id"]).exists():
                store.write(summary, curve)
        for k, v in part["counts"].items():
            counts[k] = counts.get(k, 0) + v
