"""Profile training steps of one model: where the time goes, by kernel and by kind of work.

    python -m suite.profile --model flash --context 2048 [--compile | --compile-mode MODE] [--size base] [--steps 2]
                            [--size quality --vocab-size 257]   # the paper-figures shapes
                            [--set KEY=VALUE ...] [--kernels N] [--out FILE]

The output has three parts: the profiler's table of the most expensive ops and kernels (each kernel
also shows up under the op that launched it, so that table double-counts), then a breakdown per
training step into kinds of work (matmul, attention, fused element-wise, reductions, softmax /
cross-entropy, copies, optimizer, ...), summed over device kernels only (or over CPU ops' self time
on a CPU), so it adds up to the step, and last the most expensive of those kernels one by one
(`--kernels N` rows).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import torch

from .cli import parse_key_value
from .runs import COMPILE_MODES, RunConfig
from .sweep import UsageError, check
from .batches import random_batches
from .model import build, model_config
from .step import Step

# (kind, substrings of a kernel or op name, lower case); the first kind that matches wins
KINDS: list[tuple[str, tuple[str, ...]]] = [
    ("attention (fused SDPA)", ("sdpa", "fmha", "flash_fwd", "flash_bwd", "attention", "efficient_attention")),
    ("softmax / cross-entropy", ("softmax", "nll_loss", "cross_entropy", "log_softmax")),
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "wgmma", "cublas", "aten::mm", "aten::bmm", "aten::addmm",
                "aten::baddbmm", "aten::matmul", "aten::linear")),
    ("compiled reductions (triton red/per)", ("triton_red", "triton_per")),
    ("compiled element-wise (triton poi)", ("triton_poi", "triton_")),
    ("optimizer", ("multi_tensor", "adam", "foreach")),
    ("copies / casts", ("copy", "memcpy", "memset", "to_copy", "cast", "cat_", "aten::cat", "aten::contiguous")),
    ("reductions (eager)", ("reduce_kernel", "aten::sum", "aten::mean", "norm", "cumsum", "scan")),
    ("element-wise (eager)", ("elementwise", "vectorized", "aten::")),
]


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in KINDS:
        if any(k in low for k in keys):
            return kind
    return "other"


def breakdown(events: list[tuple[str, float, int]], steps: int) -> list[tuple[str, float, int, float]]:
    """(name, self time in us, calls) -> [(kind, ms per step, calls per step, share)], largest first."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ms, calls = defaultdict(float), defaultdict(int)
    for name, us, n in events:
        k = kind_of(name)
        ms[k] += us / 1e3 / steps
        calls[k] += n
    total = sum(ms.values()) or 1.0
    return sorted(((k, ms[k], calls[k] // steps, ms[k] / total) for k in ms), key=lambda r: -r[1])


def breakdown_table(rows: list[tuple[str, float, int, float]], where: str) -> str:
    total = sum(r[1] for r in rows)
    lines = [f"## Per training step, by kind of work ({where})", "",
             "| kind | ms / step | launches / step | share |", "|---|---|---|---|"]
    lines += [f"| {k} | {m:.1f} | {c} | {s:.0%} |" for k, m, c, s in rows]
    lines.append(f"| total | {total:.1f} | | |")
    return "\n".join(lines) + "\n"


def kernel_table(events: list[tuple[str, float, int]], steps: int, rows: int) -> str:
    """The `rows` most expensive kernels (or CPU ops) per training step, each counted once, with its kind."""
    top = sorted(events, key=lambda e: -e[1])[:rows]
    lines = [f"## Per training step, the {len(top)} most expensive of {len(events)}", "",
             "| ms / step | launches / step | kind | name |", "|---|---|---|---|"]
    lines += [f"| {us / 1e3 / steps:.2f} | {n // steps} | {kind_of(name)} | `{name[:140]}` |" for name, us, n in top]
    return "\n".join(lines) + "\n"


def _self_time(evt, cuda: bool) -> float:
    if cuda:
        t = getattr(evt, "self_device_time_total", None)  # torch >= 2.4; self_cuda_time_total before
        return float(t if t is not None else evt.self_cuda_time_total)
    return float(evt.self_cpu_time_total)


def profile_step(cfg: RunConfig, rows: int = 25, steps: int = 2, kernels: int = 60) -> str:
    device = torch.device(cfg.device)
    data = random_batches(cfg)
    model = build(model_config(cfg, data.vocab_size), cfg.seed, device)
    step = Step(model, cfg, device)
    inputs, targets = (t.to(device) for t in data.sample(torch.Generator().manual_seed(0)))
    for _ in range(3):
        step(inputs, targets)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step(inputs, targets)
        if cuda:
            torch.cuda.synchronize()
    averages = prof.key_averages()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    head = (f"# {cfg.label()} compile={cfg.compile} size={cfg.size} tokens/step={cfg.tokens_per_step} "
            f"vocab={data.vocab_size} ({steps} steps)\n")
    # kernels only on a GPU (ops would count their kernels twice); ops' self time on a CPU
    events = [(e.key, _self_time(e, cuda), e.count) for e in averages
              if (e.device_type == DeviceType.CUDA) == cuda]
    where = "device kernels" if cuda else "CPU ops, self time"
    return (head + averages.table(sort_by=key, row_limit=rows, max_name_column_width=90) + "\n"
            + breakdown_table(breakdown(events, steps), where) + "\n" + kernel_table(events, steps, kernels))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--objective", default="clm")
    p.add_argument("--size", default="base")
    p.add_argument("--tokens-per-step", type=int, default=65536)
    p.add_argument("--vocab-size", type=int, default=32768,
                   help="random tokens over this vocabulary (257: the byte vocabulary of the quality presets)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-mode", choices=COMPILE_MODES, help="torch.compile with this mode (implies --compile)")
    p.add_argument("--steps", type=int, default=2, help="profiled training steps (after 3 warm-up steps)")
    p.add_argument("--kernels", type=int, default=60, help="rows of the closing per-kernel table")
    p.add_argument("--set", dest="model_overrides", action="append", type=parse_key_value, metavar="KEY=VALUE",
                   help="a model option, as for run_all.py (repeatable)")
    p.add_argument("--out")
    a = p.parse_args(argv)
    from .distributed import check_device
    try:  # cpu, cuda or cuda:N, and present on this machine
        check_device(a.device)
    except ValueError as exc:
        p.error(f"--device {a.device}: {exc}")
    try:  # an unknown model or option, or an impossible size: a usage error, before any work
        cfg = RunConfig(model=a.model, context=a.context, objective=a.objective, kind="speed", size=a.size,
                        tokens_per_step=a.tokens_per_step, vocab_size=a.vocab_size, device=a.device,
                        compile=a.compile_mode or a.compile,
                        precision="bf16" if a.device.startswith("cuda") else "fp32",
                        overrides=tuple(dict(a.model_overrides or []).items()))
        check([cfg])
    except (ValueError, UsageError) as exc:
        p.error(str(exc))
    text = profile_step(cfg, steps=a.steps, kernels=a.kernels)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
