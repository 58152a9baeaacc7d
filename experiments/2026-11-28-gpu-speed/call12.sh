# session 3, call 3: masked LM at base for all seven models (+ compiled variants), then the causal-LM gaps
source suite/gpu_env.sh
R=results/nvidia-h200/gpu-speed
(while sleep 15; do tar czf $OUT/results.tgz $R 2>/dev/null; done) &
BG=$!
END=$((SECONDS + 500))
TR="torchrun --standalone --nproc_per_node 2 run_all.py --preset gpu-speed --out $R"
timeout $((END - SECONDS)) $TR --objectives mlm > $OUT/log.txt 2>&1
left=$((END - SECONDS)); echo "left for clm: $left s" >> $OUT/log.txt
[ $left -gt 30 ] && timeout $left $TR --objectives clm >> $OUT/log.txt 2>&1
kill $BG; sleep 1
tar czf $OUT/results.tgz $R
grep -E " ok | oom|rror|left for" $OUT/log.txt | tail -100 | cut -c1-150
