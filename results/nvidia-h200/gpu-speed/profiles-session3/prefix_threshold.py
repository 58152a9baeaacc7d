"""Where the chunk prefix's GEMM starts to beat the float32 cumsum (implementations/attention/gau.py,
PREFIX_MATMUL_MIN_CHUNKS). One compiled causal FLASH GAU layer (d 768, e 1536, s 128, chunk 256),
forward + backward, 65,536 tokens per call, bf16 autocast, median of 50 calls after warm-up, with the
choice forced each way. Run on the GPU: python results/nvidia-h200/gpu-speed/profiles-session3/prefix_threshold.py
"""
import statistics
import sys

import torch

sys.path.insert(0, ".")
import implementations.attention.gau as gau  # noqa: E402
from suite.train import compile_model  # noqa: E402,F401  (the same Dynamo settings as the runs)

D, TOKENS = 768, 65536


def time_layer(T: int, min_chunks: int) -> float:
    gau.PREFIX_MATMUL_MIN_CHUNKS = min_chunks
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = gau.GAU(D, expansion=2, s=128, causal=True, max_len=T, attention="mixed_chunk", chunk=256).cuda()
    fn = torch.compile(layer, dynamic=False)
    x = torch.randn(TOKENS // T, T, D, device="cuda", requires_grad=True)
    g = torch.randn(TOKENS // T, T, D, device="cuda", dtype=torch.bfloat16)
    times = []
    for i in range(60):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = fn(x)
        out.backward(g)
        end.record()
        torch.cuda.synchronize()
        if i >= 10:
            times.append(start.elapsed_time(end))
        x.grad = None
        layer.zero_grad(set_to_none=True)
    return statistics.median(times)


print("| T | chunks | cumsum ms | matmul ms | matmul - cumsum |")
print("|---|---|---|---|---|")
for T in (512, 1024, 2048, 4096, 8192):
    cumsum, matmul = time_layer(T, 10 ** 9), time_layer(T, 1)
    print(f"| {T} | {T // 256} | {cumsum:.3f} | {matmul:.3f} | {matmul - cumsum:+.3f} |", flush=True)
