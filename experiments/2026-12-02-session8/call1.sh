# Session 8, call 1 (2 x H200, ~9.5 minutes): issue 13's H200 rows through the runner, with the layers unrolled
# (NOTES entry 21), and issue 11's learning-rate check of Transformer++ at masked LM 8K. Runs from a clean export
# of a commit (.data/tree.tgz: `git rev-parse HEAD > /tmp/COMMIT && git archive --format=tar --add-file=/tmp/COMMIT
# HEAD | gzip > .data/tree.tgz`) with .data/eltec_eng.jsonl.gz; carry [".data"]. Every sweep its own folder
# under /tmp/s8, archived into $OUT/results.tgz every 15 s.
#   GPU 0: compiled FLASH and Transformer++ at the quality size, 2K, FLASH with the Triton kernel, and FLASH's
#          profile: the GAU's heads in bf16 and RoPE tables (NOTES entry 23; before: 58.9 / 41.5 ms,
#          results/nvidia-h200/cudagraphs; the Triton kernel 71.2 ms, entry 18); then
#          paper-speed --backend jax, all seven models, causal 2K (the backends table's H200 JAX rows at the
#          paper-figures shapes); then gpu-speed --backend jax, FLASH and Transformer++ at 2K / 8K (the
#          base size, entry 19's shapes: was 1.43x / 1.33x at 2K with the scan)
#   GPU 1: gpu-quality --backend jax, FLASH and Transformer++, causal 2K, seed 0, 600 steps (beside the PyTorch
#          runs of results/nvidia-h200/gpu-quality, seeds 0-1: JAX's curve within the seed spread?); the other
#          five models train 100 steps on JAX (every model trains on the H200); then Transformer++ masked LM 8K
#          at 2e-3 / 1e-3 / 4e-3, 600 steps (is the 14.2x of NOTES entry 17 a learning-rate handicap?); the
#          call's kill at 570 s may cut the last of them: run what is missing in the next call
S=/tmp/s8
mkdir -p $S /tmp/tree && tar xzf .data/tree.tgz -C /tmp/tree && cp .data/eltec_eng.jsonl.gz /tmp/
cd /tmp/tree
export FLASH_REPRO_COMMIT=$(cat COMMIT) FLASH_REPRO_ELTEC=/tmp/eltec_eng.jsonl.gz
source suite/gpu_env.sh
(while sleep 15; do tar czf $OUT/results.tgz -C $S . 2>/dev/null; done) &
BG=$!
( export CUDA_VISIBLE_DEVICES=0
  timeout 70 python3 run_all.py --preset paper-speed --models flash,transformer_plus_plus --objectives clm --contexts 2048 \
    --no-variants --out $S/heads-bf16
  timeout 45 python3 run_all.py --preset paper-speed --models flash --objectives clm --contexts 2048 --no-variants \
    --set kernel=triton --out $S/heads-bf16
  mkdir -p $S/profiles && timeout 40 python3 -m suite.profile --model flash --size quality --vocab-size 257 --context 2048 \
    --compile --out $S/profiles/flash_quality_2048_compiled_heads_bf16.txt > /dev/null
  timeout 270 python3 run_all.py --preset paper-speed --backend jax --objectives clm --contexts 2048 --no-variants \
    --out $S/jax-paper-speed
  timeout 150 python3 run_all.py --preset gpu-speed --backend jax --models flash,transformer_plus_plus --objectives clm \
    --contexts 2k,8k --no-variants --out $S/jax-gpu-speed
) > $S/log-gpu0.txt 2>&1 &
G0=$!
( export CUDA_VISIBLE_DEVICES=1
  timeout 240 python3 run_all.py --preset gpu-quality --backend jax --models flash,transformer_plus_plus \
    --objectives clm --contexts 2048 --seeds 0 --no-variants --out $S/jax-gpu-quality
  timeout 150 python3 run_all.py --preset gpu-quality --backend jax --models transformer,transformer_plus,performer,combiner,flash_quad \
    --objectives clm --contexts 2048 --seeds 0 --no-variants --steps 100 --out $S/jax-train-100
  for lr in 2e-3 1e-3 4e-3; do
    timeout 120 python3 run_all.py --preset gpu-quality --models transformer_plus_plus --objectives mlm --contexts 8k \
      --seeds 0 --no-variants --lr $lr --out $S/mlm-8k-lr
  done
) > $S/log-gpu1.txt 2>&1 &
G1=$!
( sleep 570; pkill -f run_all.py; pkill -f suite.profile ) &
wait $G0 $G1
kill $BG 2>/dev/null; sleep 1
tar czf $OUT/results.tgz -C $S .
cp $S/log-*.txt $OUT/
ls -la $OUT
grep -hE " ok | oom|rror|Traceback" $S/log-*.txt | cut -c1-200 | tail -40
