"""Issue 12: chunk.py's two ways of adding FLASH's local and global parts, timed as whole training steps.

    GLOBAL_FORM "baddbmm"  local = P v, then out = local + q_lin state in a second GEMM's epilogue (the default)
    GLOBAL_FORM "concat"   out = [P, q_lin] [v; state], one GEMM over K = C + s (no local tensor, no copy of it)

One compiled FLASH training step at the paper-speed shapes (quality size, 65,536 tokens per step, vocabulary
257, bf16), causal LM at 512 / 2K / 8K and masked LM at 2K, each form in its own child process (torch.compile
traces GLOBAL_FORM once), one lane per GPU; median of 10 steps after 3 warm-up steps (suite.train.run, the
runner's own timing). Prediction (chunk.py's comment, NOTES entry 26): "concat" saves 0.1-0.2 ms per GAU
layer, 1.5-3 ms of FLASH's 56.8 ms step at 2K. Writes global_form.md and global_form.json to $OUT.

Measured in session 9 (results/nvidia-h100/global-form, NOTES entry 30): "concat" was faster at every setting and
became chunk.py's only form, so GLOBAL_FORM is gone; this script runs at commits before that change (6d2574c).

    python experiments/2026-12-03-session9/global_form.py               # GPU machine, ~2 minutes on 2 GPUs
    python experiments/2026-12-03-session9/global_form.py --cpu-dry-run # tiny sizes on the CPU
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORMS = ("baddbmm", "concat")
SETTINGS = [("clm", 512), ("clm", 2048), ("clm", 8192), ("mlm", 2048)]


def config(objective: str, context: int, dry_run: bool) -> dict:
    if dry_run:
        return dict(model="flash", kind="speed", size="tiny", context=64, objective=objective, tokens_per_step=256,
                    vocab_size=257, device="cpu", precision="fp32", compile=False, warmup_timing_steps=1,
                    timed_steps=2)
    return dict(model="flash", kind="speed", size="quality", context=context, objective=objective,
                tokens_per_step=65536, vocab_size=257, device="cuda", precision="bf16", compile=True,
                warmup_timing_steps=3, timed_steps=10)


def child(form: str, objective: str, context: int, dry_run: bool) -> dict:
    sys.path.insert(0, str(ROOT))
    from implementations.attention.gau import chunk
    from suite import train
    from suite.runs import RunConfig

    chunk.GLOBAL_FORM = form
    row, _ = train.run(RunConfig(**config(objective, context, dry_run)))
    return {k: row.get(k) for k in ("status", "message", "step_ms_median", "step_ms_p10", "step_ms_p90",
                                     "peak_mem_gib", "compile_s", "git_commit")}


def lane(gpu: int, cases: list[tuple[str, str, int]], dry_run: bool) -> list[dict]:
    out = []
    for form, objective, context in cases:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
        args = [sys.executable, __file__, "--child", form, objective, str(context)] + (["--cpu-dry-run"] if dry_run else [])
        t0 = time.perf_counter()
        p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
        last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        try:
            row = json.loads(last)
        except json.JSONDecodeError:
            row = {"status": "error", "message": (p.stderr.strip().splitlines() or ["no output"])[-1][:300]}
        row.update(form=form, objective=objective, context=context, wall_s=round(time.perf_counter() - t0, 1))
        print(f"{form:8s} {objective} {context:5d}: {row.get('step_ms_median')} ms ({row['status']})", flush=True)
        out.append(row)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-dry-run", action="store_true")
    p.add_argument("--child", nargs=3, metavar=("FORM", "OBJECTIVE", "CONTEXT"))
    p.add_argument("--out", default=os.environ.get("OUT", "out"))
    p.add_argument("--settings", default=",".join(f"{o}:{c}" for o, c in SETTINGS),
                   help="objective:context pairs, comma-separated (default: all four)")
    args = p.parse_args()
    if args.child:
        form, objective, context = args.child
        print(json.dumps(child(form, objective, int(context), args.cpu_dry_run)))
        return 0
    gpus = 1
    if not args.cpu_dry_run:
        import torch
        gpus = max(1, torch.cuda.device_count())
    settings = [(o, int(c)) for o, c in (x.split(":") for x in args.settings.split(","))]
    cases = [(f, o, c) for o, c in settings for f in FORMS]  # both forms of a setting next to each other
    lanes = [[c for i, c in enumerate(cases) if i % gpus == g] for g in range(gpus)]
    with ThreadPoolExecutor(gpus) as pool:
        rows = [r for rs in pool.map(lambda g: lane(g, lanes[g], args.cpu_dry_run), range(gpus)) for r in rs]
    by = {(r["form"], r["objective"], r["context"]): r for r in rows}
    lines = ["# chunk.py's GLOBAL_FORM: FLASH's compiled training step (ms, median of 10)", "",
             "| objective | context | baddbmm | concat | concat / baddbmm |", "|---|---|---|---|---|"]
    for o, c in settings:
        a, b = (by[(f, o, c)].get("step_ms_median") for f in FORMS)
        ratio = f"{b / a:.3f}" if a and b else "-"
        cells = [f"{x:.1f}" if x else by[(f, o, c)]["status"] for f, x in zip(FORMS, (a, b))]
        lines.append(f"| {o} | {c} | {cells[0]} | {cells[1]} | {ratio} |")
    if args.cpu_dry_run:
        lines += ["", "(CPU dry run: the tiny size at context 64, fp32, eager; not a measurement)"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "global_form.md").write_text("\n".join(lines) + "\n")
    (out / "global_form.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
