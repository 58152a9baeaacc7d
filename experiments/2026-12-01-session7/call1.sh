# Session 7, call 1 (2 x H200, ~9 minutes): where the JAX step's time goes (issue 13), where the fused kernel's
# time goes, Liger's fused loss and CUDA graphs (issue 12). Runs from a clean export of a commit
# (.data/tree.tgz: `git rev-parse HEAD > /tmp/COMMIT && git archive --format=tar --add-file=/tmp/COMMIT HEAD |
# gzip > .data/tree.tgz`) with the wheels in .whl/ (liger-kernel 0.8.5: `pip download liger-kernel==0.8.5
# --no-deps -d .whl`); carry [".data", ".whl"]. Writes under /tmp/s7, archived into $OUT/results.tgz every 15 s.
#   both GPUs: experiments/2026-12-01-jax-profile/profile_jax.py (one lane per GPU, --budget-s 300)
#   then GPU 0: gpu_check.py's profile section alone; CUDA graphs (reduce-overhead) at the quality size beside
#               plain compiled, FLASH and Transformer++ at 2K, in one folder
#   and  GPU 1: Liger's fused linear + cross-entropy beside the plain loss at the base size, 2K, in its own folder;
#               then profiles of compiled FLASH and Transformer++ at the quality size, 2K (issue 12's target
#               there: FLASH's step no slower than Transformer++'s; session 6: 59.9 against 41.7 ms)
S=/tmp/s7
mkdir -p $S /tmp/tree && tar xzf .data/tree.tgz -C /tmp/tree && cp -r .whl /tmp/tree/
cd /tmp/tree
export FLASH_REPRO_COMMIT=$(cat COMMIT)
source suite/gpu_env.sh
# the JAX traces (up to 15 MiB) travel as their own file: a file comes back only up to 16 MiB
(while sleep 15; do tar czf $OUT/results.tgz --exclude profile_traces.tgz -C $S . 2>/dev/null; done) &
BG=$!
OUT=$S/jax-profile timeout 360 python3 experiments/2026-12-01-jax-profile/profile_jax.py --budget-s 300 > $S/log-jax-profile.txt 2>&1
( export CUDA_VISIBLE_DEVICES=0
  OUT=$S/kernel-profile timeout 100 python3 experiments/2026-11-30-fused-kernel/gpu_check.py --skip check op step tiles
  QS="--preset paper-speed --objectives clm --contexts 2048 --models flash,transformer_plus_plus --no-variants --out $S/cudagraphs"
  timeout 80 python3 run_all.py $QS
  timeout 100 python3 run_all.py $QS --compile-mode reduce-overhead
) > $S/log-gpu0.txt 2>&1 &
G0=$!
( export CUDA_VISIBLE_DEVICES=1
  SP="--preset gpu-speed --objectives clm --contexts 2048 --models flash,transformer_plus_plus --no-variants --compile --out $S/liger"
  timeout 90 python3 run_all.py $SP
  timeout 120 python3 run_all.py $SP --loss liger
  mkdir -p $S/profiles
  for m in flash transformer_plus_plus; do
    timeout 60 python3 -m suite.profile --model $m --size quality --vocab-size 257 --context 2048 --compile \
      --out $S/profiles/${m}_quality_2048_compiled.txt > /dev/null
  done
) > $S/log-gpu1.txt 2>&1 &
G1=$!
( sleep 560; pkill -f run_all.py; pkill -f gpu_check.py; pkill -f profile_jax.py ) &
wait $G0 $G1
kill $BG 2>/dev/null; sleep 1
tar czf $OUT/results.tgz --exclude profile_traces.tgz -C $S .
cp $S/log-*.txt $OUT/
cp $S/jax-profile/profile_traces.tgz $OUT/ 2>/dev/null
ls -la $OUT
grep -hE " ok | oom|rror|Traceback|^\| (flash|transformer)" $S/log-*.txt | cut -c1-200 | tail -60
