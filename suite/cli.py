"""The command line of run_all.py.

Every bad input is refused before any work, as one line on stderr naming the flag (exit status 2);
Ctrl-C, wherever it arrives, ends with one line too (exit status 130). So that an interrupt during
the first second (importing PyTorch) is caught as well, this module imports only the standard library
at load time and the suite inside `main`.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

PROG = "run_all.py"
# names other code and tests take from this module, imported on first use (PEP 562)
_LAZY = {"UsageError": "sweep", "check_ddp": "sweep", "execute": "sweep", "expand": "sweep", "get_preset": "sweep",
         "DataError": "data", "ResultsError": "store", "ResultsStore": "store", "RunConfig": "runs",
         "COMPILE_MODES": "runs", "PRESETS": "presets", "D": "distributed"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        module = importlib.import_module(f"suite.{_LAZY[name]}")
        return module if name == "D" else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ArgumentError(Exception):
    """A flag argparse refuses (reported as one line, exit status 2, like every usage error)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints the whole usage; one line says it
        raise ArgumentError(message)


def _list(kind, what: str):
    """A comma-separated list of `what`, each item read by `kind` (which raises ArgumentTypeError or
    ValueError with what is wrong with it); an empty value or an empty item is refused."""
    def parse(text: str):
        if not text.strip():
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got an empty value")
        items = [t.strip() for t in text.split(",")]
        out = []
        for t in items:
            if not t:
                raise argparse.ArgumentTypeError(f"an empty item in {text!r}; expected a comma-separated list of {what}")
            try:
                out.append(kind(t))
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise argparse.ArgumentTypeError(f"item {t!r}: {exc}") from None
        return out
    parse.__name__ = what
    return parse


def context_value(text: str) -> int:
    """A context length: a whole number of tokens, or of 1024 tokens with a k (2k = 2048)."""
    t = text.strip().lower()
    m = re.fullmatch(r"([+-]?\d+)(k?)", t)
    if m is None:
        raise argparse.ArgumentTypeError("not a context length; write a whole number of tokens, e.g. 512 or 2k")
    value = int(m.group(1)) * (1024 if m.group(2) else 1)
    if value < 1:
        raise argparse.ArgumentTypeError("a context length must be at least 1 token")
    return value


def whole_number(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("not a whole number") from None


def positive_int(text: str) -> int:
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text!r}")
    return value


def nonempty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty value")
    return text


def device_value(text: str) -> str:
    from . import distributed as D
    try:
        D.check_device(text.strip(), present=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def checkpoint_interval(text: str) -> tuple[int | None, float | None] | None:
    """--checkpoint-every: N (steps), Ns or Nm (wall-clock seconds or minutes), or off (None)."""
    t = text.strip().lower()
    if t == "off":
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([sm]?)", t)
    if not m or float(m.group(1)) <= 0 or (not m.group(2) and "." in m.group(1)):
        raise argparse.ArgumentTypeError(f"expected N steps, Ns, Nm or off, got {text!r}")
    if not m.group(2):
        return int(m.group(1)), None
    return None, float(m.group(1)) * (60 if m.group(2) == "m" else 1)


def parse_key_value(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as a bool (true / false), an int, a float, or else kept as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    raw = raw.strip()
    if raw.lower() in ("true", "false"):
        return key.strip(), raw.lower() == "true"
    for kind in (int, float):
        try:
            return key.strip(), kind(raw)
        except ValueError:
            pass
    return key.strip(), raw


def swept_learning_rates(folder: Path) -> dict[str, float]:
    """{model: its best peak learning rate} from the learning-rate sweep recorded in a results folder."""
    from .analysis import best_lr
    from .report import load_results
    from .sweep import UsageError
    try:
        runs, _ = load_results(folder)
    except FileNotFoundError:
        raise UsageError(f"--lr-from {folder}: no runs.csv there (run the learning-rate sweep first)") from None
    best = best_lr(runs)
    if best.empty:
        raise UsageError(f"--lr-from {folder}: no model ran at more than one learning rate there")
    return {str(r["model"]): float(r["lr"]) for _, r in best.iterrows()}


def parser() -> argparse.ArgumentParser:
    import implementations as impl

    from .checkpoint import DEFAULT_EVERY_S
    from .presets import PRESETS
    from .runs import BACKENDS, COMPILE_MODES, LOSSES

    p = Parser(
        prog=PROG, description="flash-repro: train and time the paper's models, then draw its tables and "
        "figures. With no arguments: the CPU 'smoke' preset on the built-in Shakespeare corpus.")
    p.add_argument("--preset", default="smoke", help=f"one of: {', '.join(PRESETS)} (default smoke)")
    p.add_argument("--models", type=_list(nonempty, "model names"),
                   help="comma-separated subset, e.g. flash,transformer_plus_plus")
    p.add_argument("--contexts", type=_list(context_value, "context lengths"),
                   help="comma-separated context lengths, e.g. 512,2k")
    p.add_argument("--objectives", type=_list(nonempty, "objectives"), help="clm (causal LM), mlm (masked LM) or both")
    p.add_argument("--seeds", type=_list(whole_number, "seeds"), help="comma-separated seeds")
    p.add_argument("--corpus", help="shakespeare, eltec, pg19, wiki40b, c4 or text:PATH")
    p.add_argument("--tokenizer", choices=["bytes", "bpe"], help="bytes (default) or a BPE trained on the corpus")
    p.add_argument("--eltec-path", help="path of eltec_eng.jsonl.gz (default: ../shared/data/eltec-eng/)")
    p.add_argument("--device", type=device_value, help="cpu, cuda or cuda:N (default: the preset's)")
    p.add_argument("--size", choices=list(impl.SIZE_PRESETS), help="model size preset")
    p.add_argument("--budget", type=positive_float, help="training-time budget per run in seconds (train runs; "
                   "the schedule then runs on time)")
    p.add_argument("--steps", type=positive_int, help="train every run for exactly this many steps, schedule and "
                   "evaluations on steps (the fair protocol; replaces a preset's time budget)")
    p.add_argument("--lr", type=positive_float,
                   help="peak learning rate for every run (default: the preset's, per model)")
    p.add_argument("--lr-from", metavar="FOLDER", type=nonempty, help="each model's peak learning rate: the best "
                   "of a learning-rate sweep recorded in this results folder (e.g. by --preset gpu-lr-sweep)")
    p.add_argument("--tokens-per-step", type=positive_int, help="tokens per optimizer step")
    p.add_argument("--timed-steps", type=positive_int, help="speed runs: steps timed after the warm-up "
                   "(default: the preset's; fewer on a slow platform, e.g. a CPU at the paper's sizes)")
    p.add_argument("--precision", choices=["fp32", "bf16"])
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    p.add_argument("--compile-mode", choices=COMPILE_MODES,
                   help="torch.compile with this mode (implies --compile), e.g. max-autotune-no-cudagraphs")
    p.add_argument("--backend", choices=BACKENDS, help="the framework the runs train in: pytorch (default) or jax "
                   "(implementations/jax, jit-compiled; the variant is then e.g. flash+jax)")
    p.add_argument("--loss", choices=LOSSES, help="the training loss: torch (default: logits, then cross-entropy) or "
                   "liger (Liger-Kernel's fused linear + cross-entropy; a GPU, our models, one process per run)")
    p.add_argument("--no-variants", action="store_true", help="leave out the preset's extra variants (compiled, ...)")
    p.add_argument("--peers", action="store_true", help="also measure the preset's external reference "
                   "implementations (Hugging Face Llama, flash-pytorch); or name them in --models as peer:NAME")
    p.add_argument("--sdpa-backend", choices=["cudnn", "flash", "efficient", "math"],
                   help="force one PyTorch SDPA backend (default: PyTorch's choice)")
    p.add_argument("--ddp", action="store_true", help="under torchrun: train each run data-parallel over all "
                   "processes (DistributedDataParallel; --tokens-per-step stays the global batch) instead of "
                   "sharing the runs out, one process per run")
    p.add_argument("--set", dest="model_options", action="append", type=parse_key_value, metavar="KEY=VALUE",
                   help="a model option for every run, e.g. --set chunk=128 (repeatable; the options of each "
                   "model: python -m implementations.fidelity); the runs are then a variant, e.g. flash[chunk=128]")
    p.add_argument("--out", type=nonempty, help="results folder (default results/<platform>/<preset>)")
    p.add_argument("--fresh", action="store_true", help="measure again runs that are already finished in the "
                   "results folder (their records move to superseded/<time>/, nothing is overwritten); an "
                   "interrupted --fresh sweep resumes when the same command is run again")
    p.add_argument("--retry-failed", action="store_true", help="measure again the runs whose recorded status is "
                   "error or oom (their records move to superseded/<time>/); ok, nan and diverged runs stay")
    p.add_argument("--checkpoint-every", type=checkpoint_interval, default=(None, DEFAULT_EVERY_S), metavar="N|Ns|Nm|off",
                   help="train runs save a checkpoint in <out>/checkpoints every N steps or every N seconds / "
                   f"minutes of wall time (default {DEFAULT_EVERY_S / 60:g}m); a killed sweep run again resumes "
                   "each run from its last one; off: none")
    p.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    p.add_argument("--list", action="store_true", help="list presets and models and exit")
    return p


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0 done, 2 bad input, 130 interrupted, 141 closed pipe)."""
    state = {"stage": "start", "fresh": False}
    try:
        return _guarded(argv, state)
    except KeyboardInterrupt:
        return _interrupted(state)


def _interrupted(state: dict) -> int:
    """One line for Ctrl-C (a second Ctrl-C while it is written is ignored); exit status 130."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        previous = None
    try:
        if state["stage"] != "sweep":
            _say("interrupted before any run started; nothing was measured")
        elif state["fresh"]:
            _say("interrupted; finished runs are saved. Run the same command (with --fresh) again to resume this "
                 "--fresh sweep: the runs it already measured are kept, the others are measured again")
        else:
            _say("interrupted; finished runs are saved, run the same command again to resume")
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return 130


def _guarded(argv, state: dict) -> int:
    try:
        from .data import DataError
        from .store import ResultsError
        from .sweep import UsageError

        try:
            args = parser().parse_args(argv)
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else 0
        state["fresh"] = bool(args.fresh)
        try:
            return _main(args, state)
        except (UsageError, DataError, ResultsError) as exc:
            _say(f"error: {exc}")
            return 2
    except ArgumentError as exc:
        _say(f"error: {exc}")
        return 2
    except BrokenPipeError:  # the output went to a reader that stopped early (e.g. `| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # the shell's code for a process ended by SIGPIPE


def check_out_folder(out: Path) -> None:
    """Refuse, before any work, a results folder that cannot be created or written in, or whose tables are
    not ours (a foreign runs.csv / curves.csv would only be refused when the report is written)."""
    from .sweep import UsageError

    where = f"results folder {out} (--out)"
    try:
        if out.exists() and not out.is_dir():
            raise UsageError(f"{where} exists and is not a folder; choose a folder for --out")
        probe = out
        while not probe.exists() and probe.parent != probe:  # the nearest folder that exists
            probe = probe.parent
        if not probe.is_dir():
            raise UsageError(f"{where}: {probe} is a file, not a folder; choose another --out")
        probes = [probe] + ([out / "runs"] if probe == out and (out / "runs").exists() else [])
        for folder in probes:
            if not folder.is_dir():
                raise UsageError(f"{where}: {folder} is not a folder; move it away or choose another --out")
            try:  # can we write there? (create and remove a temporary file)
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=".flash-repro-write-test-")
                os.close(fd)
                os.unlink(tmp)
            except OSError as exc:
                raise UsageError(f"{where}: cannot write in {folder} ({exc.strerror or exc}); choose a writable "
                                 "folder for --out") from None
        if probe == out:  # an existing runs.csv / curves.csv there must be ours (ResultsError: exit 2)
            from .store import ResultsStore
            ResultsStore(out).check_tables()
    except OSError as exc:
        raise UsageError(f"{where}: {exc.strerror or exc}; choose another --out") from None


def check_devices(runs, args) -> None:
    """Refuse runs on a device this machine lacks (not for --dry-run, which lists a GPU preset anywhere)."""
    from . import distributed as D
    from .sweep import UsageError

    for device in dict.fromkeys(r.device for r in runs):
        try:
            D.check_device(device)
        except ValueError as exc:
            if args.device is not None:
                raise UsageError(f"--device {args.device}: {exc}") from None
            raise UsageError(f"preset {args.preset!r} runs on {device}, but {exc}; add --device cpu to run it "
                             "here (slowly)") from None


def check_backend(runs, args) -> None:
    """The JAX backend: its packages installed, our models only, one process per run. The fused loss:
    Liger-Kernel installed, a GPU, our models, the PyTorch backend, one process per run."""
    import importlib.util

    import implementations as impl

    from .sweep import UsageError

    if any(r.loss == "liger" for r in runs):
        why = ("needs the package liger-kernel, not installed here (pip install liger-kernel)"
               if importlib.util.find_spec("liger_kernel") is None else
               "runs on a GPU only (its kernels are Triton's)" if any(r.device == "cpu" for r in runs) else
               "is for the PyTorch backend" if any(r.backend != "pytorch" for r in runs) else
               "works with one process per run, not --ddp" if args.ddp else
               "is for our models (the peers compute their own loss)" if any(impl.is_peer(r.model) for r in runs)
               else "")
        if why:
            raise UsageError(f"--loss liger {why}")

    if not any(r.backend == "jax" for r in runs):
        return
    missing = [m for m in ("jax", "optax") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"--backend jax: needs the package(s) {', '.join(missing)}, not installed here "
                         "(pip install -r requirements.txt)")
    if args.ddp:
        raise UsageError("--backend jax: --ddp is PyTorch's data parallelism; the JAX backend trains each run in "
                         "one process (torchrun may still share the runs out)")
    peers = sorted({r.model for r in runs if impl.is_peer(r.model)})
    if peers:
        raise UsageError(f"--backend jax: the peers {', '.join(peers)} have no JAX implementation; valid models: "
                         f"{', '.join(impl.list_models())}")


def _main(args, state: dict) -> int:
    import implementations as impl

    from . import distributed as D
    from . import provenance
    from .data import DataError, normalize_corpus_spec
    from .presets import PRESETS
    from .runs import RunConfig
    from .sweep import UsageError, check_ddp, expand, get_preset

    if args.list:
        for name, p in PRESETS.items():
            print(f"preset {name}: {p.description}")
        for name in impl.list_models():
            print(f"model {name}: {impl.get_spec(name).description}")
        return 0
    preset = get_preset(args.preset)
    if args.budget is not None and args.steps is not None:
        raise UsageError("--budget (a time budget) and --steps (a fixed number of steps) exclude each other")
    corpus = None
    if args.corpus is not None:  # one spelling per corpus, so that equal inputs give equal run ids
        try:
            corpus = normalize_corpus_spec(args.corpus)
        except DataError as exc:
            raise UsageError(f"--corpus: {exc}") from None
    settings = {k: v for k, v in dict(corpus=corpus, tokenizer=args.tokenizer, device=args.device,
                                       size=args.size, budget_s=args.budget, tokens_per_step=args.tokens_per_step,
                                       max_steps=args.steps, lr=args.lr,
                                       precision=args.precision, compile=args.compile_mode or args.compile,
                                       sdpa_backend=args.sdpa_backend, timed_steps=args.timed_steps,
                                       backend=args.backend, loss=args.loss).items()
                if v is not None}
    if args.steps is not None:  # exactly this many steps: no time budget
        settings["budget_s"] = None
    elif args.budget is not None:  # a time budget: no step cap from the preset
        settings["max_steps"] = RunConfig.max_steps
    if args.model_options:
        settings["overrides"] = tuple(dict(args.model_options).items())  # the last value of a key wins
    if args.lr_from:
        if args.lr is not None:
            raise UsageError("--lr and --lr-from exclude each other")
        # the swept rates hold at every setting: the preset's per-setting rates give way to them
        preset = dataclasses.replace(preset, lr={**preset.lr, **swept_learning_rates(Path(args.lr_from))},
                                     setting_lr={})
    runs = expand(preset, models=args.models, contexts=args.contexts, objectives=args.objectives, seeds=args.seeds,
                  variants=not args.no_variants, with_peers=args.peers, **settings)
    if not runs:
        raise UsageError("the flags select no runs (e.g. --objectives that exclude every model given in --models)")
    check_backend(runs, args)
    device = runs[0].device
    default_name = preset.folder or args.preset
    if args.ddp and D.world_size() > 1:  # data-parallel runs keep their run_id: not in the same folder by default
        default_name += f"-ddp{D.world_size()}"
    out = Path(args.out) if args.out else Path(provenance.ROOT) / "results" / provenance.platform_slug(device) / default_name
    check_out_folder(out)
    if args.dry_run:
        for r in runs:
            print(r.run_id, r.label(), f"size={r.size} batch={r.batch_size} compile={r.compile}")
        print(f"{len(runs)} runs -> {out}")
        return 0
    check_devices(runs, args)
    if args.ddp:
        check_ddp(runs, D.world_size())
    # under torchrun every process joins the group now, and leaves it at the end
    D.init_from_env(device)
    try:
        return _sweep(args, runs, out, state)
    finally:
        D.destroy()


def _sweep(args, runs, out: Path, state: dict) -> int:
    """Execute the runs (this process's share, or all of them data-parallel), then, on rank 0 only,
    consolidate the results and write the report once every process is done. Rank 0 holds the results
    folder's lock throughout, so that a second sweep on the same folder is refused instead of training
    every run again."""
    from . import distributed as D
    from .objectives import check_length
    from .store import ResultsStore
    from .checkpoint import Checkpointing
    from .sweep import data_key, execute

    store = ResultsStore(out)
    data_for = None
    hashes: dict = {}
    created = not out.exists()
    with contextlib.ExitStack() as held:
        if D.is_main():  # refuse a folder in use before loading any data
            held.enter_context(store.lock())
        try:
            if any(r.kind == "train" for r in runs):
                from .batches import corpus_batches, tokenized
                tokenized.cache_clear()  # the data as it is now (an in-process caller may have run a sweep before)
                for r in runs:  # load and check the data before any training starts
                    if r.kind == "train":
                        train, val, _, data_hash = tokenized(r.corpus, r.tokenizer, r.bpe_vocab, args.eltec_path)
                        hashes[data_key(r)] = data_hash
                        for split, data in (("training", train), ("validation", val)):
                            check_length(data, r.context, f"{r.label()}: the {split} split of {r.corpus!r}")
                data_for = lambda cfg: corpus_batches(cfg, args.eltec_path)  # noqa: E731
        except BaseException:  # bad data (or Ctrl-C): leave no trace, not even the folder the lock made
            held.close()
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()
            raise
        t0 = time.time()
        world = D.world_size()
        if D.is_main():
            how = "" if world == 1 else (f", data-parallel over {world} processes" if args.ddp
                                         else f", shared out over {world} processes")
            print(f"{len(runs)} runs of preset {args.preset!r}{how} -> {out}", file=sys.stderr)
        state["stage"] = "sweep"
        every = args.checkpoint_every
        checkpoints = Checkpointing(out / "checkpoints", *every) if every is not None else None
        counts = execute(runs, store, data_for=data_for, log=lambda m: print(m, file=sys.stderr), ddp=args.ddp,
                         fresh=args.fresh, retry_failed=args.retry_failed, data_hashes=hashes, checkpoints=checkpoints)
        D.barrier()  # every process's runs are recorded before rank 0 writes the report
        if not D.is_main():
            return 0
        runs_df, curves_df = store.consolidate()
        from .report import summary_markdown, write_report
        written = write_report(out, runs_df, curves_df)
    print(summary_markdown(out))
    print(f"\n{sum(v for k, v in counts.items() if k != 'skipped')} runs done, {counts.get('skipped', 0)} already "
          f"finished; {dict((k, v) for k, v in counts.items() if k != 'skipped')} in {time.time() - t0:.0f} s")
    if counts.get("skipped"):
        print(f"({counts['skipped']} runs were already finished in {out} and were not run again; "
              "add --fresh to measure them again, or --retry-failed for those that failed)")
    print(f"results: {out}/runs.csv, {out}/curves.csv")
    for kind, paths in written.items():
        for path in paths:
            print(f"{kind}: {path}")
    return 0
