# Session 9 on one H200, call 2 of 2 (see one-gpu-1.sh): is JAX's one-signed offset noise (call2.sh's header),
# Transformer++ at 5e-4 at masked LM 8K, and chunk.py's GLOBAL_FORM at causal 2K (issue 12).
#   - gpu-quality, causal 2K, 600 steps, seed 1 of FLASH and Transformer++ on PyTorch, then on JAX; then FLASH's
#     (no seed 0 on JAX again: the compiled PyTorch FLASH / FLASH-Quad step instead, on the card that ran call 1's
#     JAX timings). Prediction: the seed-1 differences within +-0.005 of zero, not
#     both above
#   - masked LM 8K, 600 steps, Transformer++ at 5e-4
#   - global_form.py at causal 2K (prediction: concat 1-3 ms faster at 2K)
source experiments/2026-12-03-session9/device.sh
start_call /tmp/s9b
( sleep 565; pkill -f run_all.py; pkill -f global_form.py ) &
(
  timeout 170 python3 run_all.py --preset gpu-quality --models flash,transformer_plus_plus --objectives clm \
    --contexts 2048 --seeds 1 --no-variants --out $S/parity-pytorch
  timeout 190 python3 run_all.py --preset gpu-quality --backend jax --models flash,transformer_plus_plus \
    --objectives clm --contexts 2048 --seeds 1 --no-variants --out $S/parity-jax
  timeout 90 python3 run_all.py --preset gpu-quality --models transformer_plus_plus --objectives mlm --contexts 8k \
    --seeds 0 --no-variants --lr 5e-4 --out $S/mlm-8k-lr
  # the compiled PyTorch step beside call 1's JAX re-timings, on the same card (call 1 ran on an H100)
  timeout 110 python3 run_all.py --preset paper-speed --models flash,flash_quad --objectives clm \
    --contexts 2048 --no-variants --out $S/paper-speed
) > $S/log-gpu0.txt 2>&1
timeout 100 python3 experiments/2026-12-03-session9/global_form.py --settings clm:2048 \
  --out $S/global-form > $S/log-global-form.txt 2>&1
end_call
cat $S/global-form/global_form.md 2>/dev/null
