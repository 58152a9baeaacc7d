# Session 8, call 2 (2 x H200, ~6 minutes): call 1 timed the runner's unrolled JAX FLASH step at 64.6 ms at the
# quality size, 2K, against session 7's 54.9 ms for the same unrolled step before commit f400ef7 (the GAU's
# heads in float32, rounded once after RoPE); Transformer++ (no GAU heads) moved 43.5 -> 44.3 ms. profile_jax.py
# times the heads' old form (heads=lowp; renamed heads=f32 since, for the reverse test) and the bias gradient
# as a GEMM (bias=dot), per group, one per GPU:
#   GPU 0: the quality size (d 512), GPU 1: the base size (d 768), both 2K; baseline = the runner's unrolled step.
# Same tree export as call 1 (.data/tree.tgz from the commit that holds this file); carry [".data"].
mkdir -p /tmp/tree && tar xzf .data/tree.tgz -C /tmp/tree
cd /tmp/tree
export FLASH_REPRO_COMMIT=$(cat COMMIT)
source suite/gpu_env.sh
P=experiments/2026-12-01-jax-profile/profile_jax.py
CUDA_VISIBLE_DEVICES=0 timeout 420 python3 $P --group quality --variants heads=lowp,bias=dot --lanes 1 --budget-s 300 \
  --out /tmp/pq > /tmp/log-quality.txt 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout 420 python3 $P --group base --variants heads=lowp,bias=dot --lanes 1 --budget-s 300 \
  --out /tmp/pb > /tmp/log-base.txt 2>&1 &
wait
mkdir -p /tmp/pj && mv /tmp/pq /tmp/pj/quality && mv /tmp/pb /tmp/pj/base && cp /tmp/log-*.txt /tmp/pj/
tar czf $OUT/profile.tgz -C /tmp/pj .
grep -h "^| flash\|^| transformer" /tmp/pj/*/profile_jax.md | cut -c1-160
