# session 5 (2026-11-30), issue 11: the first runs of the paper-figures preset (3,000 steps of 65,536
# tokens, quality size) on the 2 x H200 machine: FLASH on GPU 0, Transformer++ on GPU 1, seed 0, causal
# LM 2K / 512 / 8K then masked LM 2K / 512 / 8K. Runs from a clean export of the commit (.data/tree.tgz,
# made by `git archive`), so that uncommitted work in the tree never reaches a run; writes outside the
# synced tree (/tmp/pf); every call waits and archives what is done.
# Usage: bash <this> start | wait      (WAIT_S: seconds to wait, default 540)
LOG=/tmp/pf/plan.log
if [ "$1" = start ]; then
  mkdir -p /tmp/pf /tmp/tree && tar xzf .data/tree.tgz -C /tmp/tree
  cp .data/eltec_eng.jsonl.gz /tmp/pf/
  ( cd /tmp/tree && source suite/gpu_env.sh )
  export FLASH_REPRO_ELTEC=/tmp/pf/eltec_eng.jsonl.gz FLASH_REPRO_COMMIT=$(cat /tmp/tree/COMMIT)
  for g in 0 1; do
    m=$([ $g = 0 ] && echo flash || echo transformer_plus_plus)
    ( cd /tmp/tree && CUDA_VISIBLE_DEVICES=$g setsid python run_all.py --preset paper-figures --models $m --seeds 0 \
        --contexts 2048,512,8192 --out /tmp/pf/gpu$g --checkpoint-every 3m > /tmp/pf/gpu$g.log 2>&1 < /dev/null & )
  done
  sleep 5
fi
END=$((SECONDS + ${WAIT_S:-540}))
while [ $SECONDS -lt $END ]; do sleep 10; done
cp /tmp/pf/gpu*.log $OUT/ 2>/dev/null; cp /tmp/tree/env.txt $OUT/ 2>/dev/null
tar czf $OUT/results.tgz -C /tmp/pf --exclude checkpoints --exclude '*.gz' gpu0 gpu1
nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader
grep -hE "\] train:|runs of preset|rror|Traceback" /tmp/pf/gpu*.log | cut -c1-200 | tail -30
