# session 4 (2026-11-29), issue 10: the learning-rate sweep, then all seven models at their best rate
# (causal and masked LM, 512 and 2K), then the fidelity before/after variants at 2K. Runs in the
# background (setsid) so that it outlives one device call; every call waits and archives what is done.
# Usage on the 2 x H200 machine: FLASH_REPRO_COMMIT=<commit> bash <this> start | wait
R=results/nvidia-h200/gpu-quality
LOG=/tmp/session4.log
if [ "$1" = start ]; then
  source suite/gpu_env.sh
  export FLASH_REPRO_ELTEC=$PWD/.data/eltec_eng.jsonl.gz
  TR="torchrun --standalone --nproc_per_node 2 run_all.py --out $R"
  setsid bash -c "
    $TR --preset gpu-lr-sweep
    $TR --preset gpu-quality --lr-from $R --seeds 0 --contexts 512,2048 --no-variants
    $TR --preset gpu-quality --lr-from $R --seeds 0 --contexts 2048 --models flash_quad,flash
    echo PLAN-DONE" > $LOG 2>&1 < /dev/null &
  sleep 5
fi
END=$((SECONDS + ${WAIT_S:-540}))
while [ $SECONDS -lt $END ] && ! grep -q PLAN-DONE $LOG; do sleep 10; done
cp $LOG $OUT/log.txt; cp ${OUT:-/tmp}/env.txt $OUT/ 2>/dev/null
tar czf $OUT/results.tgz $R
grep -E "\] train:| runs of preset|PLAN-DONE|rror" $LOG | cut -c1-160 | tail -60
