"""Profile one training step of one model: where the time goes, by kernel.

    python -m suite.profile --model flash --context 2048 [--compile] [--size base] [--out FILE]
"""
from __future__ import annotations

import argparse
import sys

import torch

from .runs import RunConfig
from .train import Step, build, random_batches


def profile_step(cfg: RunConfig, rows: int = 25) -> str:
    device = torch.device(cfg.device)
    data = random_batches(cfg)
    model = build(cfg, data.vocab_size, device)
    step = Step(model, cfg, device)
    inputs, targets = (t.to(device) for t in data.sample(torch.Generator().manual_seed(0)))
    for _ in range(3):
        step(inputs, targets)
    if device.type == "cuda":
        torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(2):
            step(inputs, targets)
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    head = f"# {cfg.label()} compile={cfg.compile} size={cfg.size} tokens/step={cfg.tokens_per_step} (2 steps)\n"
    return head + prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=90)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--objective", default="clm")
    p.add_argument("--size", default="base")
    p.add_argument("--tokens-per-step", type=int, default=65536)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--out")
    a = p.parse_args(argv)
    cfg = RunConfig(model=a.model, context=a.context, objective=a.objective, kind="speed", size=a.size,
                    tokens_per_step=a.tokens_per_step, device=a.device, compile=a.compile,
                    precision="bf16" if a.device.startswith("cuda") else "fp32")
    text = profile_step(cfg)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
