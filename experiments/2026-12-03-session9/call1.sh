# Session 9, call 1 (2 x H200, ~9.5 minutes): what session 8 left of issues 13 and 11 (NOTES entries 24, 25).
# Runs from a clean export of a commit (.data/tree.tgz: `git rev-parse HEAD > /tmp/COMMIT && git archive
# --format=tar --add-file=/tmp/COMMIT HEAD | gzip > .data/tree.tgz`) with .data/eltec_eng.jsonl.gz; carry
# [".data"]. Every sweep its own folder under /tmp/s9, archived into $OUT/results.tgz every 15 s.
#   GPU 0: paper-speed --backend jax, all seven, causal 2K, with the JAX heads back in bf16 (entry 24: FLASH
#          64.6 -> ~55 ms expected, FLASH-Quad 68.0 -> lower; the other five unchanged), then gpu-speed
#          --backend jax for FLASH at 2K / 8K (base size: 174.7 / 172.3 -> ~157 / ~157 expected); then
#          profile_jax.py's qkv=split for Transformer++ at the quality size (its JAX step spends 2.8 of 43.7 ms
#          in a standalone concatenate of the q, k, v gradients, NOTES entry 29; prediction: 1.5-2.5 ms less)
#   GPU 1: gpu-quality --backend jax, 100 steps, Combiner and FLASH-Quad (the two that session 8's timeout cut:
#          then all seven have trained on JAX on the H200); then masked LM 8K, 600 steps: FLASH at learning
#          rates 4e-3 / 2e-3 / 1e-3 and Transformer++ at 5e-4 (entry 25: Transformer++ 1.142 / 1.344 / 2.174 at
#          1e-3 / 2e-3 / 4e-3; which rate does each model want at masked 8K?)
source experiments/2026-12-03-session9/device.sh
start_call /tmp/s9
( export CUDA_VISIBLE_DEVICES=0
  timeout 300 python3 run_all.py --preset paper-speed --backend jax --objectives clm --contexts 2048 --no-variants \
    --out $S/jax-paper-speed
  timeout 150 python3 run_all.py --preset gpu-speed --backend jax --models flash --objectives clm \
    --contexts 2k,8k --no-variants --out $S/jax-gpu-speed
  timeout 170 python3 experiments/2026-12-01-jax-profile/profile_jax.py --group quality --variants qkv=split \
    --lanes 1 --budget-s 120 --out $S/jax-profile-qkv
) > $S/log-gpu0.txt 2>&1 &
G0=$!
( export CUDA_VISIBLE_DEVICES=1
  timeout 200 python3 run_all.py --preset gpu-quality --backend jax --models combiner,flash_quad \
    --objectives clm --contexts 2048 --seeds 0 --no-variants --steps 100 --out $S/jax-train-100
  for lr in 4e-3 2e-3 1e-3; do
    timeout 100 python3 run_all.py --preset gpu-quality --models flash --objectives mlm --contexts 8k \
      --seeds 0 --no-variants --lr $lr --out $S/mlm-8k-lr
  done
  timeout 100 python3 run_all.py --preset gpu-quality --models transformer_plus_plus --objectives mlm --contexts 8k \
    --seeds 0 --no-variants --lr 5e-4 --out $S/mlm-8k-lr
) > $S/log-gpu1.txt 2>&1 &
G1=$!
( sleep 570; pkill -f run_all.py ) &
wait $G0 $G1
end_call
