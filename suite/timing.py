"""Measuring steps properly: warm-up, device synchronisation, medians, peak memory, which kernel ran."""
from __future__ import annotations

import contextlib
import re
import statistics
import time
from typing import Callable

import torch

SDPA_BACKENDS = ("cudnn", "flash", "efficient", "math")


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    # CUDA: "CUDA out of memory", cuBLAS workspace allocation; CPU: "DefaultCPUAllocator: can't allocate memory"
    return isinstance(exc, RuntimeError) and bool(re.search(r"out of memory|not enough memory|CUBLAS_STATUS_ALLOC|"
                                                             r"can't allocate memory", str(exc), re.I))


# On an accelerator the host only draws batches (small tensor ops); with PyTorch's default of one thread per core,
# two processes on one machine (one per GPU, started without torchrun, which sets OMP_NUM_THREADS=1) oversubscribe
# its cores. On this 2-core CPU, two processes drawing masked-LM batches took 7-11 ms per batch with 2 threads
# each against 2.3-2.7 ms with 1 (results/NOTES.md, entry 14).
HOST_THREADS = 4


@contextlib.contextmanager
def host_threads(device: str):
    """While a run on an accelerator (`device` not "cpu") executes: at most HOST_THREADS intra-op threads on
    the host, restored afterwards. CPU runs keep every thread."""
    before = torch.get_num_threads()
    if not str(device).startswith("cpu"):
        torch.set_num_threads(min(before, HOST_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sdpa_context(backend: str | None):
    """Force one SDPA backend (None: PyTorch's own choice)."""
    if backend is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    if backend not in names:
        raise ValueError(f"unknown SDPA backend {backend!r}; valid: {', '.join(SDPA_BACKENDS)}")
    return sdpa_kernel([names[backend]])


def time_steps(step: Callable[[], object], device: torch.device, *, warmup: int, steps: int) -> list[float]:
    """Milliseconds per call of `step` (a whole training step), after `warmup` untimed calls.

    CUDA: one pair of events around each step, read after a final synchronisation.
    CPU: a wall clock around each step.
    """
    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(steps)]
        for start, end in events:
            start.record()
            step()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) for start, end in events]
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def summarise(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"step_ms_median": float("nan"), "step_ms_p10": float("nan"), "step_ms_p90": float("nan")}
    qs = statistics.quantiles(ms, n=10, method="inclusive") if len(ms) > 1 else [ms[0]] * 9
    return {"step_ms_median": statistics.median(ms), "step_ms_p10": qs[0], "step_ms_p90": qs[-1]}


ATTENTION_KERNEL_PATTERNS = (
    ("cudnn", re.compile(r"cudnn.*(fmha|sdpa|attn|flash)|(fmha|sdpa).*cudnn|sm90_flash|cudnn_generated", re.I)),
    ("flash", re.compile(r"flash_(fwd|bwd)|pytorch_flash|flash::", re.I)),
    ("efficient", re.compile(r"fmha_cutlass|mem_efficient|efficient_attention|attention_kernel_backward", re.I)),
    ("triton", re.compile(r"triton_", re.I)),
)


def kernels_that_ran(step: Callable[[], object], device: torch.device) -> str:
    """Run one step under the profiler; name the attention kernel families seen (CUDA only)."""
    if device.type != "cuda":
        return "cpu"
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize(device)
    names = {evt.key for evt in prof.key_averages()}
    found = [label for label, pattern in ATTENTION_KERNEL_PATTERNS if any(pattern.search(n) for n in names)]
    return "+".join(found) if found else "none-matched"
