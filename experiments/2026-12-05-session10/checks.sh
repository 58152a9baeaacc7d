# Session 10, the short checks before paper-figures resume (NOTES "Next device session", item 1): one GPU, ~9.5
# minutes, most needed first; any GPU count works (each step uses GPU 0). Same tree export and carry as session 9
# (experiments/2026-12-03-session9/call1.sh's header; carry [".data"]). Merge:
#   CARD=nvidia-h100 bash experiments/2026-12-03-session9/merge.sh one-gpu /work/.device/N   # CARD for an H100
#   - Transformer++ at masked LM 8K, 600 steps, lr 5e-4: does its best rate lie below 1e-3 (1.142 bits per byte)?
#   - Transformer++ at masked LM 512 / 2K, 600 steps, lr 1e-3 (its preset 2e-3 was chosen at causal 2K; FLASH
#     leads it by 0.13-0.16 bits per byte at masked 512 / 2K)
#   - H100: gpu-speed --backend jax FLASH 2K (the 95% memory fraction; session 9's run ran out of memory);
#     H200: paper-speed --backend jax FLASH / FLASH-Quad causal 2K (the H200 rows still hold float32 heads)
#   - Performer's causal_chunk 128 / 256 at paper-speed causal 2K (default 64: a 90 ms step)
#   - FLASH-Quad with --set kernel=triton at causal 4K / 8K (its torch op builds T x T scores; if the kernel is
#     faster there, the remaining FLASH-Quad 4K / 8K paper-figures runs take it: a speed-only option)
#   - profile_jax.py's qkv=split for Transformer++ (NOTES entry 29)
source experiments/2026-12-03-session9/device.sh
start_call /tmp/s10
export CUDA_VISIBLE_DEVICES=0
( sleep 560; pkill -f run_all.py; pkill -f profile_jax.py ) &
(
  timeout 150 python3 run_all.py --preset gpu-quality --models transformer_plus_plus --objectives mlm --contexts 8k \
    --seeds 0 --no-variants --lr 5e-4 --out $S/mlm-8k-lr
  timeout 180 python3 run_all.py --preset gpu-quality --models transformer_plus_plus --objectives mlm \
    --contexts 512,2k --seeds 0 --no-variants --lr 1e-3 --out $S/mlm-lr
  if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H100; then
    timeout 100 python3 run_all.py --preset gpu-speed --backend jax --models flash --objectives clm \
      --contexts 2k --no-variants --out $S/jax-gpu-speed
  else
    timeout 120 python3 run_all.py --preset paper-speed --backend jax --models flash,flash_quad --objectives clm \
      --contexts 2048 --no-variants --out $S/jax-paper-speed
  fi
  for c in 128 256; do
    timeout 60 python3 run_all.py --preset paper-speed --models performer --objectives clm --contexts 2048 \
      --set causal_chunk=$c --out $S/performer-chunk
  done
  # FLASH-Quad's fused kernel at long contexts (never timed there): the torch op builds T x T scores per layer,
  # 161 / 180 ms per step at causal / masked 8K on the H200, ~9 minutes per paper-figures run
  timeout 100 python3 run_all.py --preset paper-speed --models flash_quad --contexts 4k,8k --objectives clm \
    --set kernel=triton --out $S/quad-kernel
  if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H100; then  # the torch op on the same card
    timeout 90 python3 run_all.py --preset paper-speed --models flash_quad --contexts 4k,8k --objectives clm \
      --out $S/quad-kernel
  fi
  timeout 150 python3 experiments/2026-12-01-jax-profile/profile_jax.py --group quality --variants qkv=split \
    --lanes 1 --budget-s 100 --out $S/jax-profile-qkv
) > $S/log-gpu0.txt 2>&1
end_call
