"""Where the chunk prefix's GEMM starts to beat the float32 cumsum (implementations/attention/gau/chunk.py,
PREFIX_MATMUL_MIN_CHUNKS, the threshold of chunk_prefix "auto"). One compiled causal FLASH GAU layer
(d 768, e 1536, s 128, chunk 256), forward + backward, 65,536 tokens per call, bf16 autocast, median of
50 calls after 10 warm-up calls, with the way forced by the layer's chunk_prefix option ("cumsum" or
"matmul"; the FLASH model option of the same name). Run on the GPU:
python experiments/2026-11-28-gpu-speed/prefix_threshold.py
"""
import statistics
import sys

import torch

sys.path.insert(0, ".")
from implementations.attention.gau import GAU  # noqa: E402
from suite.model import compile_model  # noqa: E402,F401  (the same Dynamo settings as the runs)

D, TOKENS = 768, 65536
EXPANSION, S, CHUNK = 2, 128, 256  # e = 2d, the paper's s and chunk size
WARMUP_CALLS, TIMED_CALLS = 10, 50


def time_layer(T: int, chunk_prefix: str) -> float:
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = GAU(D, expansion=EXPANSION, s=S, causal=True, max_len=T, attention="mixed_chunk", chunk=CHUNK,
                chunk_prefix=chunk_prefix).cuda()
    fn = torch.compile(layer, dynamic=False)
    x = torch.randn(TOKENS // T, T, D, device="cuda", requires_grad=True)
    g = torch.randn(TOKENS // T, T, D, device="cuda", dtype=torch.bfloat16)
    times = []
    for i in range(WARMUP_CALLS + TIMED_CALLS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = fn(x)
        out.backward(g)
        end.record()
        torch.cuda.synchronize()
        if i >= WARMUP_CALLS:
            times.append(start.elapsed_time(end))
        x.grad = None
        layer.zero_grad(set_to_none=True)
    return statistics.median(times)


if __name__ == "__main__":
    print("| T | chunks | cumsum ms | matmul ms | matmul - cumsum |")
    print("|---|---|---|---|---|")
    for T in (512, 1024, 2048, 4096, 8192):
        cumsum, matmul = time_layer(T, "cumsum"), time_layer(T, "matmul")
        print(f"| {T} | {T // CHUNK} | {cumsum:.3f} | {matmul:.3f} | {matmul - cumsum:+.3f} |", flush=True)
