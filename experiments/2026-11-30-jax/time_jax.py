"""JAX against compiled PyTorch: train-step time of the same model, same config, on one GPU (issue 13).

For each case, the JAX step (suite/jax_step.run_jax: one jitted step, bf16 compute on float32 masters,
scan over layers) and the PyTorch step (suite.train.run, kind "speed", torch.compile, bf16 autocast) of
the same RunConfig: median ms per step, JAX compile seconds, peak memory, and the ratio JAX / PyTorch
(DESIGN.md's target: within 10%). Cases, most important first (the script stops starting new ones when
--budget-s runs out, and says which it skipped):
    quality size (d 512, 8 blocks = 16 GAUs, vocabulary 256), 65,536 tokens per step, causal:
        FLASH and Transformer++ at 2K, 8K, 512
    base size (d 768, 12 blocks = 24 GAUs, vocabulary 32,768): FLASH and Transformer++ at 2K, 8K
    the other five models at the quality size, 2K
They run in the order quality 2K, quality 8K, base 2K, base 8K, quality 512, others.
Every measurement runs in its own process (a clean GPU, an honest peak memory, an out-of-memory that
cannot spoil the next case). JAX's rematerialisation is "auto" (suite/jax_step.py: the first of "none",
"dots" (keep the dense layers' outputs), "full" whose compiled step fits the GPU by XLA's own memory
analysis; the table says which ran); a JAX case that still runs out of memory is tried again with
--retry-remat (default "full"), and a softmax model whose cuDNN attention fails is tried again with
XLA's attention.

On the GPU machine (jax[cuda] 0.11.2, torch 2.11), from the repository root; it ends within --budget-s
(330 s) plus a few seconds, listing the cases it had no time for as "skipped" (run those with --groups):
    python experiments/2026-11-30-jax/time_jax.py                 # writes $OUT (default ./out)
    python experiments/2026-11-30-jax/time_jax.py --groups base   # one group only
Here, on the CPU, with tiny sizes, one thread each (every path, in about two minutes):
    python experiments/2026-11-30-jax/time_jax.py --cpu-dry-run
Writes jax_timing.json (one row per measurement) and jax_timing.md (the table) under --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
# JAX and PyTorch may share the GPU (the JAX process imports torch too): no preallocation, so that both fit
# and JAX's peak memory is what it used
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

TOKENS = 65_536
MAIN = ("flash", "transformer_plus_plus")
OTHERS = ("flash_quad", "transformer", "transformer_plus", "performer", "combiner")
SOFTMAX = ("transformer", "transformer_plus", "transformer_plus_plus")
# group -> (size preset, vocabulary)
GROUPS = {"quality": ("quality", 256), "base": ("base", 32768), "others": ("quality", 256)}
# (group, context, models), most important first: the cases run in this order while the budget lasts
ORDER = (("quality", 2048, MAIN), ("quality", 8192, MAIN), ("base", 2048, MAIN), ("base", 8192, MAIN),
         ("quality", 512, MAIN), ("others", 2048, OTHERS))
CASE_TIMEOUT_S = 240      # one measurement (startup, compile, warm-up, timing)
STARTUP_RESERVE_S = 20    # no new case starts with less than this left of the budget
DRY_RUN = dict(device="cpu", precision="fp32", tokens=512, size="tiny", vocab=256, context_divisor=64,
               torch_compile=False, warmup=1, timed=3, budget_s=240.0, groups="quality,base", threads=1)


# --------------------------------------------------------------------------- one measurement (child process)

def measure(spec: dict) -> dict:
    """Run one case on one backend (in this process) and return its summary row."""
    from suite.runs import RunConfig

    cfg = RunConfig(**spec["run"])
    if spec.get("threads"):
        import torch

        torch.set_num_threads(spec["threads"])
    if spec["backend"] == "jax":
        from suite.jax_step import run_jax

        summary, _ = run_jax(cfg, remat=spec["remat"], sdpa=spec.get("sdpa"))
    else:
        from suite.train import run

        summary, _ = run(cfg)
        summary["peak_mem_gib"] = summary.get("peak_mem_gib", float("nan"))
    return summary


# --------------------------------------------------------------------------- the driver

def cases(args) -> list[dict]:
    groups = args.groups.split(",")
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise SystemExit(f"unknown group(s) {unknown}; valid: {', '.join(GROUPS)}")
    out = []
    for group, T, models in ORDER:
        if group in groups:
            size, vocab = GROUPS[group]
            T = max(1, T // args.context_divisor)
            for model in models:
                run = dict(model=model, context=T, kind="speed", size=args.size or size, vocab_size=args.vocab or vocab,
                           tokens_per_step=args.tokens, device=args.device, precision=args.precision,
                           compile=args.torch_compile, warmup_timing_steps=args.warmup, timed_steps=args.timed)
                out.append({"group": group, "run": run})
    return out


def run_child(spec: dict, timeout: float) -> dict:
    """One measurement in a fresh process; its row, or a row saying why there is none."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    env = dict(os.environ)
    if spec.get("threads"):  # CPU trials: both backends on the same number of threads
        n = str(spec["threads"])
        env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n)
        if n == "1":
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                                "intra_op_parallelism_threads=1").strip()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "message": f"no result within {timeout:.0f} s", "wall_s": timeout}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
    if not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"status": "error", "message": f"exit {proc.returncode}: {' | '.join(tail)[:400]}",
                "wall_s": time.perf_counter() - t0}
    row = json.loads(lines[-1][4:])
    row["wall_s"] = time.perf_counter() - t0
    return row


KEEP = ("status", "message", "step_ms_median", "step_ms_p10", "step_ms_p90", "tokens_per_s", "mfu", "model_tflops",
        "peak_mem_gib", "step_mem_gib", "compile_s", "n_params", "device_name", "jax_version", "jaxlib_version",
        "jax_device_kind", "torch_version", "sdpa_backend_seen", "jax_remat", "matmul_precision", "compile_mode")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT", "out"))
    p.add_argument("--groups", default="quality,base,others", help=f"comma-separated, from: {', '.join(GROUPS)}")
    p.add_argument("--budget-s", type=float, default=330.0, help="start no case after this many seconds")
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="bf16")
    p.add_argument("--tokens", type=int, default=TOKENS)
    p.add_argument("--size", default=None, help="one size preset for every case (default: each group's)")
    p.add_argument("--vocab", type=int, default=None, help="one vocabulary for every case")
    p.add_argument("--context-divisor", type=int, default=1, help="divide every context by this (CPU trials)")
    p.add_argument("--torch-compile", type=lambda s: s.lower() in ("1", "true", "yes"), default=True)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--timed", type=int, default=10)
    p.add_argument("--remat", default="auto",
                   help="JAX rematerialisation policy of the first try (auto: the first of none, dots, full whose "
                        "compiled step fits the GPU)")
    p.add_argument("--retry-remat", default="full", help="policy of the second try after an out-of-memory")
    p.add_argument("--skip-torch", action="store_true", help="JAX only")
    p.add_argument("--threads", type=int, default=0, help="CPU trials: threads of both backends (0: their default)")
    p.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on the CPU: every path, quickly")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:  # one measurement, printed as the last "ROW " line
        row = measure(json.loads(args.child))
        print("ROW " + json.dumps(row, default=str), flush=True)
        return 0
    if args.cpu_dry_run:
        for key, value in DRY_RUN.items():
            setattr(args, key, value)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = []
    for case in cases(args):
        for backend in ["jax"] + ([] if args.skip_torch else ["pytorch"]):
            spec = {"backend": backend, "run": case["run"], "remat": args.remat, "threads": args.threads}
            where = {"group": case["group"], **{k: case["run"][k] for k in ("model", "context", "size")}, "backend": backend}
            while spec is not None:
                left = args.budget_s - (time.perf_counter() - start)
                if left < STARTUP_RESERVE_S:
                    rows.append({**where, "knobs": "-", "status": "skipped", "message": "time budget spent"})
                    break
                result = run_child(spec, min(CASE_TIMEOUT_S, left))
                rows.append({**where, "knobs": knobs_label(spec, result),
                             **{k: result.get(k) for k in KEEP if k in result}, "wall_s": result.get("wall_s")})
                r = rows[-1]
                print(f"[{time.perf_counter() - start:6.0f} s] {backend:7s} {r['model']:22s} {r['size']:8s} "
                      f"T={r['context']:<6d} {r['knobs']:10s} {r.get('status')}: {r.get('step_ms_median') or float('nan'):.1f} ms "
                      f"(compile {r.get('compile_s') or float('nan'):.1f} s) {r.get('message') or ''}", flush=True)
                spec = fallback(spec, result, args.retry_remat)
    (out / "jax_timing.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1, default=str))
    table = markdown(rows)
    (out / "jax_timing.md").write_text(table + "\n")
    print(table)
    return 0


def knobs_label(spec: dict, result: dict) -> str:
    """How a JAX step ran: its remat policy (the one "auto" chose), and XLA's attention when forced."""
    if spec["backend"] != "jax":
        return "-"
    return str(result.get("jax_remat") or spec["remat"]) + (f",sdpa={spec['sdpa']}" if spec.get("sdpa") else "")


def fallback(spec: dict, result: dict, retry_remat: str) -> dict | None:
    """The JAX measurement to try after a failed one: more rematerialisation after an out-of-memory, XLA's
    attention after cuDNN's refused; None when there is nothing else to try."""
    if spec["backend"] != "jax":
        return None
    if result.get("status") == "oom" and retry_remat and retry_remat not in (spec["remat"], result.get("jax_remat")):
        return {**spec, "remat": retry_remat}
    if (result.get("status") == "error" and "cudnn" in str(result.get("message")).lower()
            and spec["run"]["model"] in SOFTMAX and not spec.get("sdpa")):
        return {**spec, "sdpa": "xla"}
    return None


def _num(x, fmt: str) -> str:
    return format(x, fmt) if isinstance(x, (int, float)) and x == x else "-"


def markdown(rows: list[dict]) -> str:
    """One line per case: JAX and PyTorch ms per step, the ratio, JAX compile time, peak memory."""
    lines = ["| group | model | size | T | JAX ms | PyTorch ms | JAX / PyTorch | JAX compile s | JAX peak GiB | "
             "PyTorch peak GiB | JAX knobs | notes |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    def key(r):
        return r["group"], r["model"], r["size"], r["context"]

    keys = list(dict.fromkeys(key(r) for r in rows))
    for k in keys:
        jx = [r for r in rows if key(r) == k and r["backend"] == "jax"]
        jx_ok = next((r for r in jx if r.get("status") == "ok"), jx[-1] if jx else {})
        pt = next((r for r in rows if key(r) == k and r["backend"] == "pytorch"), {})
        j_ms = jx_ok.get("step_ms_median") if jx_ok.get("status") == "ok" else None
        p_ms = pt.get("step_ms_median") if pt.get("status") == "ok" else None
        ratio = j_ms / p_ms if j_ms and p_ms else None
        notes = "; ".join(f"{r['backend']} {r['knobs']}: {r.get('status')} "
                          f"{(r.get('message') or '')[:80]}" for r in jx + ([pt] if pt else []) if r.get("status") != "ok")
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {_num(j_ms, '.1f')} | {_num(p_ms, '.1f')} | {_num(ratio, '.2f')} | "
                     f"{_num(jx_ok.get('compile_s'), '.1f')} | {_num(jx_ok.get('peak_mem_gib'), '.1f')} | "
                     f"{_num(pt.get('peak_mem_gib'), '.1f')} | {jx_ok.get('knobs') or '-'} | {notes or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
