# Session 9 on one H200 (only one-GPU kinds were lent on 2026-12-05): call1.sh's and call2.sh's work in two
# calls of ~9.5 minutes, most needed first, each run in the folder call1/call2 would use (merge.sh takes either).
# Call 1 of 2: issue 13's last H200 rows, then FLASH's learning rate at masked LM 8K (issue 11).
#   - gpu-quality --backend jax, 100 steps, Combiner and FLASH-Quad (session 8's timeout cut them): with them all
#     seven models have trained on JAX on the H200
#   - paper-speed --backend jax, FLASH and FLASH-Quad, causal 2K, re-timed with the JAX heads in bf16 again
#     (NOTES entry 24: 64.6 / 68.0 ms committed; prediction 54-56 / 60-64)
#   - masked LM 8K, 600 steps, FLASH at 4e-3 / 2e-3 / 1e-3 (entry 25: Transformer++ wants 1e-3 there, not 2e-3)
#   - gpu-speed --backend jax, FLASH 2K / 8K at the base size (174.7 / 172.3 committed; prediction 155-160)
# Same tree export and carry as call1.sh.
source experiments/2026-12-03-session9/device.sh
start_call /tmp/s9
( sleep 565; pkill -f run_all.py ) &
(
  timeout 130 python3 run_all.py --preset gpu-quality --backend jax --models combiner,flash_quad \
    --objectives clm --contexts 2048 --seeds 0 --no-variants --steps 100 --out $S/jax-train-100
  timeout 150 python3 run_all.py --preset paper-speed --backend jax --models flash,flash_quad --objectives clm \
    --contexts 2048 --no-variants --out $S/jax-paper-speed
  for lr in 4e-3 2e-3 1e-3; do
    timeout 100 python3 run_all.py --preset gpu-quality --models flash --objectives mlm --contexts 8k \
      --seeds 0 --no-variants --lr $lr --out $S/mlm-8k-lr
  done
  timeout 150 python3 run_all.py --preset gpu-speed --backend jax --models flash --objectives clm \
    --contexts 2k,8k --no-variants --out $S/jax-gpu-speed
) > $S/log-gpu0.txt 2>&1
end_call
