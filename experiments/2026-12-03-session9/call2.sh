# Session 9, call 2 (2 x H200, ~7.5 minutes): is JAX's small one-signed offset noise? chunk.py's GLOBAL_FORM; Performer's chunk.
# Session 8's 600-step runs (causal 2K, seed 0) ended 0.003 (FLASH) and 0.0045 (Transformer++) bits per byte
# above PyTorch's, both higher at every late evaluation (`python -m suite.backend_parity
# results/nvidia-h200/gpu-quality`), with
# no second seed on the H200 to say what noise is. Seed 1 on both backends, and FLASH's seed 0 again on JAX
# (its heads are bf16 again since session 8, NOTES entry 24; the newer run replaces the older in the pairing).
# Same tree export as call 1; carry [".data"]. Merge: cp -n the runs into results/nvidia-h200/gpu-quality/runs/
# (JAX FLASH seed 0: cp without -n, its run id is the old one's), suite.report, suite.backend_parity.
source experiments/2026-12-03-session9/device.sh
start_call /tmp/s9b
( export CUDA_VISIBLE_DEVICES=0
  timeout 240 python3 run_all.py --preset gpu-quality --models flash,transformer_plus_plus --objectives clm \
    --contexts 2048 --seeds 1 --no-variants --out $S/parity-pytorch
  # Performer's causal chunk (the same numbers, a speed knob; default 64: 90 ms per step at the quality size,
  # 2K, twice Transformer++'s, and ~5 minutes per paper-figures run)
  for c in 128 256; do
    timeout 60 python3 run_all.py --preset paper-speed --models performer --objectives clm --contexts 2048 \
      --set causal_chunk=$c --out $S/performer-chunk
  done
) > $S/log-gpu0.txt 2>&1 &
G0=$!
( export CUDA_VISIBLE_DEVICES=1
  timeout 260 python3 run_all.py --preset gpu-quality --backend jax --models flash,transformer_plus_plus \
    --objectives clm --contexts 2048 --seeds 1 --no-variants --out $S/parity-jax
  timeout 100 python3 run_all.py --preset gpu-quality --backend jax --models flash --objectives clm \
    --contexts 2048 --seeds 0 --no-variants --out $S/parity-jax-flash-s0
) > $S/log-gpu1.txt 2>&1 &
G1=$!
( sleep 330; pkill -f run_all.py ) &  # (global_form.py starts after it)
wait $G0 $G1
# issue 12: the concat form of mixed chunk attention against baddbmm, FLASH's whole compiled step, both GPUs
timeout 240 python3 experiments/2026-12-03-session9/global_form.py --out $S/global-form > $S/log-global-form.txt 2>&1
end_call
cat $S/global-form/global_form.md
