# session 3, call 2: final FLASH code (prefix auto, bias grads by mm, compiled loss) at every length;
# compiled Transformer++ at every length; compiled peers at 2K / 32K; the prefix threshold
source suite/gpu_env.sh
R=results/nvidia-h200/gpu-speed
P=$R/profiles-session3
(while sleep 15; do tar czf $OUT/results.tgz $R 2>/dev/null; done) &
BG=$!
SP="--preset gpu-speed --objectives clm --no-variants --compile --out $R"
ALL=512,1024,2048,4096,8192,16384,32768
( export CUDA_VISIBLE_DEVICES=0
  timeout 200 python $P/prefix_threshold.py
  timeout 200 python run_all.py $SP --models flash --contexts $ALL --fresh
  timeout 120 python run_all.py $SP --models peer:hf_llama --contexts 2048,32768 --fresh
) > $OUT/log-gpu0.txt 2>&1 &
G0=$!
( export CUDA_VISIBLE_DEVICES=1
  timeout 170 python run_all.py $SP --models transformer_plus_plus --contexts $ALL --fresh
  timeout 360 python run_all.py $SP --models peer:flash_pytorch --contexts 2048,32768 --fresh
) > $OUT/log-gpu1.txt 2>&1 &
G1=$!
wait $G0 $G1
kill $BG; sleep 1
tar czf $OUT/results.tgz $R
grep -hE "^\|| ok | oom|rror" $OUT/log-gpu0.txt $OUT/log-gpu1.txt | tail -40
