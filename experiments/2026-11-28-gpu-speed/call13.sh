# session 3, call 4: compiled peers at 512 / 8K (/ 16K), Transformer++ compiled on the flash SDPA backend
source suite/gpu_env.sh
R=results/nvidia-h200/gpu-speed
(while sleep 15; do tar czf $OUT/results.tgz $R 2>/dev/null; done) &
BG=$!
SP="--preset gpu-speed --objectives clm --no-variants --compile --out $R"
( export CUDA_VISIBLE_DEVICES=0
  timeout 300 python run_all.py $SP --models peer:flash_pytorch --contexts 512
  timeout 90 python run_all.py $SP --models peer:hf_llama --contexts 8192,16384
) > $OUT/log-gpu0.txt 2>&1 &
G0=$!
( export CUDA_VISIBLE_DEVICES=1
  timeout 300 python run_all.py $SP --models peer:flash_pytorch --contexts 8192
  timeout 90 python run_all.py $SP --models transformer_plus_plus --contexts 2048,32768 --sdpa-backend flash
) > $OUT/log-gpu1.txt 2>&1 &
G1=$!
wait $G0 $G1
kill $BG; sleep 1
tar czf $OUT/results.tgz $R
grep -hE " ok | oom|rror" $OUT/log-gpu0.txt $OUT/log-gpu1.txt | cut -c1-160
