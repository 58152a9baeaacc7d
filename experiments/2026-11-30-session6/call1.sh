# Session 6, call 1 (2 x H200, ~9.5 minutes): issue 13's JAX timing and issue 12's kernel and Liger timing.
# Two mistakes, kept as they ran: FLASH_REPRO_COMMIT is exported after gpu_env.sh wrote env.txt (so env.txt says
# "commit unknown"; the run files carry the commit), and both GPUs write sweeps into $S/fused-speed, so the
# store's lock refused GPU 0's Liger sweep while GPU 1's ran (NOTES entry 18).
# Runs from a clean export of a commit (.data/tree.tgz made by `git archive` with the hash in COMMIT) and the
# carried wheels (.whl/: liger-kernel 0.8.5); writes under /tmp/s6, archived into $OUT/results.tgz every 15 s.
#   GPU 0: experiments/2026-11-30-jax/time_jax.py (JAX vs compiled PyTorch), then Liger's fused linear +
#          cross-entropy against the plain loss (base size, 2K, FLASH and Transformer++).
#   GPU 1: experiments/2026-11-30-fused-kernel/gpu_check.py (kernel v2 vs v1 vs torch), then the speed preset
#          (base size, compiled) of FLASH with kernel=triton beside FLASH and Transformer++ at 2K / 8K / 32K,
#          all in this one call so the ratios come from one machine.
S=/tmp/s6
mkdir -p $S /tmp/tree && tar xzf .data/tree.tgz -C /tmp/tree && cp -r .whl /tmp/tree/
cd /tmp/tree
source suite/gpu_env.sh
export FLASH_REPRO_COMMIT=$(cat COMMIT)
(while sleep 15; do tar czf $OUT/results.tgz -C $S . 2>/dev/null; done) &
BG=$!
SP="--preset gpu-speed --objectives clm --no-variants --compile --out $S/fused-speed"
( export CUDA_VISIBLE_DEVICES=0
  OUT=$S/jax timeout 320 python experiments/2026-11-30-jax/time_jax.py --budget-s 300
  timeout 100 python run_all.py $SP --models flash,transformer_plus_plus --contexts 2048 --loss liger
  timeout 100 python run_all.py $SP --models flash,transformer_plus_plus --contexts 2048 --out $S/fused-speed-gpu0
) > $S/log-gpu0.txt 2>&1 &
G0=$!
( export CUDA_VISIBLE_DEVICES=1
  OUT=$S/kernel timeout 260 python experiments/2026-11-30-fused-kernel/gpu_check.py --budget-s 200
  for T in 2048 8192 32768; do
    timeout 100 python run_all.py $SP --models flash,transformer_plus_plus --contexts $T
    timeout 60 python run_all.py $SP --models flash --contexts $T --set kernel=triton
  done
) > $S/log-gpu1.txt 2>&1 &
G1=$!
( sleep 555; kill -- -$G0 -$G1 2>/dev/null; pkill -f run_all.py; pkill -f time_jax.py ) &
wait $G0 $G1
kill $BG 2>/dev/null; sleep 1
tar czf $OUT/results.tgz -C $S .
cp $S/log-gpu*.txt $OUT/
grep -hE "\] (jax|pytorch) | ok | oom|rror|Traceback|^\|" $S/log-gpu0.txt $S/log-gpu1.txt | cut -c1-180 | tail -60
