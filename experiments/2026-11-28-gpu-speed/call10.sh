# session 3, call 1: compiled loss + A/B of prefix=matmul / bias_grad=mm; profiles; layer bench
source suite/gpu_env.sh
R=results/nvidia-h200/gpu-speed
P=$R/profiles-session3
mkdir -p $P
(while sleep 15; do tar czf $OUT/results.tgz $R 2>/dev/null; done) &
BG=$!
SP="--preset gpu-speed --objectives clm --no-variants --compile --out $R"
( export CUDA_VISIBLE_DEVICES=1
  timeout 170 python run_all.py $SP --models flash --contexts 512,2048,32768 --fresh
  timeout 150 python run_all.py $SP --models flash --contexts 512,2048,32768 --set prefix=matmul --set bias_grad=mm
  timeout 140 python run_all.py $SP --models transformer_plus_plus --contexts 512,2048,32768 --fresh
  timeout 80 python -m suite.profile --model flash --context 512 --size quality --compile --out $P/flash_512_quality.txt | tail -3
) > $OUT/log-gpu1.txt 2>&1 &
G1=$!
( export CUDA_VISIBLE_DEVICES=0
  for spec in "flash 2048 base" "flash 2048 base prefix=matmul bias_grad=mm" "transformer_plus_plus 2048 base"; do
    set -- $spec; m=$1; T=$2; size=$3; shift 3; sets=""; tag=""
    for kv in "$@"; do sets="$sets --set $kv"; tag="${tag}_${kv%%=*}"; done
    timeout 100 python -m suite.profile --model $m --context $T --size $size --compile $sets --out $P/${m}_${T}_${size}${tag}.txt | tail -3
  done
  FLASH_REPRO_BENCH_COMPILE=1 FLASH_REPRO_BENCH_CONTEXTS=512,2048 timeout 200 python -m pytest suite/benchmarks/bench_attention.py \
    -k "gau_mixed and (reference or bwd)" --benchmark-enable --benchmark-json=$P/layers_d768_compiled.json -q -p no:cacheprovider 2>&1 | tail -25
) > $OUT/log-gpu0.txt 2>&1 &
G0=$!
wait $G0 $G1
kill $BG; sleep 1
tar czf $OUT/results.tgz $R
grep -hE "step_ms|ms/step| ok |oom|rror" $OUT/log-gpu1.txt | tail -20
tail -30 $OUT/log-gpu0.txt
