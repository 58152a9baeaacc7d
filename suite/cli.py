"""The command line of run_all.py."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import implementations as impl

from . import distributed as D
from . import provenance
from .data import DataError
from .objectives import check_length
from .presets import PRESETS
from .runs import COMPILE_MODES, RunConfig
from .store import ResultsError, ResultsStore
from .sweep import UsageError, check_ddp, execute, expand, get_preset


def _list(kind):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            return [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    return parse


def context_value(text: str) -> int:
    t = text.strip().lower()
    scale = 1024 if t.endswith("k") else 1
    return int(t[:-1] if scale > 1 else t) * scale


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
    try:
        runs, _ = load_results(folder)
    except FileNotFoundError:
        raise UsageError(f"--lr-from {folder}: no runs.csv there (run the learning-rate sweep first)") from None
    best = best_lr(runs)
    if best.empty:
        raise UsageError(f"--lr-from {folder}: no model ran at more than one learning rate there")
    return {str(r["model"]): float(r["lr"]) for _, r in best.iterrows()}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_all.py", description="flash-repro: train and time the paper's models, then draw its tables and "
        "figures. With no arguments: the CPU 'smoke' preset on the built-in Shakespeare corpus.")
    p.add_argument("--preset", default="smoke", help=f"one of: {', '.join(PRESETS)} (default smoke)")
    p.add_argument("--models", type=_list(str), help="comma-separated subset, e.g. flash,transformer_plus_plus")
    p.add_argument("--contexts", type=_list(context_value), help="comma-separated context lengths, e.g. 512,2k")
    p.add_argument("--objectives", type=_list(str), help="clm (causal LM), mlm (masked LM) or both")
    p.add_argument("--seeds", type=_list(int), help="comma-separated seeds")
    p.add_argument("--corpus", help="shakespeare, eltec, pg19, wiki40b, c4 or text:PATH")
    p.add_argument("--tokenizer", choices=["bytes", "bpe"], help="bytes (default) or a BPE trained on the corpus")
    p.add_argument("--eltec-path", help="path of eltec_eng.jsonl.gz (default: ../shared/data/eltec-eng/)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: the preset's)")
    p.add_argument("--size", choices=list(impl.SIZE_PRESETS), help="model size preset")
    p.add_argument("--budget", type=float, help="training-time budget per run in seconds (train runs; the "
                   "schedule then runs on time)")
    p.add_argument("--steps", type=int, help="train every run for exactly this many steps, schedule and "
                   "evaluations on steps (the fair protocol; replaces a preset's time budget)")
    p.add_argument("--lr", type=float, help="peak learning rate for every run (default: the preset's, per model)")
    p.add_argument("--lr-from", metavar="FOLDER", help="each model's peak learning rate: the best of a "
                   "learning-rate sweep recorded in this results folder (e.g. by --preset gpu-lr-sweep)")
    p.add_argument("--tokens-per-step", type=int, help="tokens per optimizer step")
    p.add_argument("--precision", choices=["fp32", "bf16"])
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    p.add_argument("--compile-mode", choices=COMPILE_MODES,
                   help="torch.compile with this mode (implies --compile), e.g. max-autotune-no-cudagraphs")
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
    p.add_argument("--out", help="results folder (default results/<platform>/<preset>)")
    p.add_argument("--fresh", action="store_true", help="measure again runs that are already finished in the "
                   "results folder (their records move to superseded/<time>/, nothing is overwritten)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    p.add_argument("--list", action="store_true", help="list presets and models and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _main(args)
    except (UsageError, DataError, ResultsError) as exc:
        print(f"run_all.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("run_all.py: interrupted; finished runs are saved, run the same command again to resume",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output went to a reader that stopped early (e.g. `| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # the shell's code for a process ended by SIGPIPE


def _main(args) -> int:
    if args.list:
        for name, p in PRESETS.items():
            print(f"preset {name}: {p.description}")
        for name in impl.list_models():
            print(f"model {name}: {impl.get_spec(name).description}")
        return 0
    preset = get_preset(args.preset)
    if args.budget is not None and args.steps is not None:
        raise UsageError("--budget (a time budget) and --steps (a fixed number of steps) exclude each other")
    settings = {k: v for k, v in dict(corpus=args.corpus, tokenizer=args.tokenizer, device=args.device,
                                       size=args.size, budget_s=args.budget, tokens_per_step=args.tokens_per_step,
                                       max_steps=args.steps, lr=args.lr,
                                       precision=args.precision, compile=args.compile_mode or args.compile,
                                       sdpa_backend=args.sdpa_backend).items() if v is not None}
    if args.steps is not None:  # exactly this many steps: no time budget
        settings["budget_s"] = None
    elif args.budget is not None:  # a time budget: no step cap from the preset
        settings["max_steps"] = RunConfig.max_steps
    if args.model_options:
        settings["overrides"] = tuple(dict(args.model_options).items())  # the last value of a key wins
    if args.lr_from:
        if args.lr is not None:
            raise UsageError("--lr and --lr-from exclude each other")
        preset = dataclasses.replace(preset, lr={**preset.lr, **swept_learning_rates(Path(args.lr_from))})
    runs = expand(preset, models=args.models, contexts=args.contexts, objectives=args.objectives, seeds=args.seeds,
                  variants=not args.no_variants, with_peers=args.peers, **settings)
    device = runs[0].device if runs else "cpu"
    default_name = preset.folder or args.preset
    if args.ddp and D.world_size() > 1:  # data-parallel runs keep their run_id: not in the same folder by default
        default_name += f"-ddp{D.world_size()}"
    out = Path(args.out) if args.out else Path(provenance.ROOT) / "results" / provenance.platform_slug(device) / default_name
    if args.dry_run:
        for r in runs:
            print(r.run_id, r.label(), f"size={r.size} batch={r.batch_size} compile={r.compile}")
        print(f"{len(runs)} runs -> {out}")
        return 0
    if device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise UsageError(f"preset {args.preset!r} runs on {device}, but PyTorch sees no CUDA device; "
                             "add --device cpu to run it here (slowly)")
    if args.ddp:
        check_ddp(runs, D.world_size())
    # under torchrun every process joins the group now, and leaves it at the end
    D.init_from_env(device)
    try:
        return _sweep(args, runs, out)
    finally:
        D.destroy()


def _sweep(args, runs, out: Path) -> int:
    """Execute the runs (this process's share, or all of them data-parallel), then, on rank 0 only,
    consolidate the results and write the report once every process is done."""
    store = ResultsStore(out)
    data_for = None
    if any(r.kind == "train" for r in runs):
        from .batches import corpus_batches, tokenized
        for r in runs:  # load and check the data before any training starts
            if r.kind == "train":
                train, val, _, _ = tokenized(r.corpus, r.tokenizer, r.bpe_vocab, args.eltec_path)
                for split, data in (("training", train), ("validation", val)):
                    check_length(data, r.context, f"{r.label()}: the {split} split of {r.corpus!r}")
        data_for = lambda cfg: corpus_batches(cfg, args.eltec_path)  # noqa: E731
    t0 = time.time()
    world = D.world_size()
    if D.is_main():
        how = "" if world == 1 else (f", data-parallel over {world} processes" if args.ddp
                                     else f", shared out over {world} processes")
        print(f"{len(runs)} runs of preset {args.preset!r}{how} -> {out}", file=sys.stderr)
    counts = execute(runs, store, data_for=data_for, log=lambda m: print(m, file=sys.stderr), ddp=args.ddp,
                     fresh=args.fresh)
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
              "add --fresh to measure them again)")
    print(f"results: {out}/runs.csv, {out}/curves.csv")
    for kind, paths in written.items():
        for path in paths:
            print(f"{kind}: {path}")
    return 0
