# Continue the paper-figures sweep (issue 11) on the 2 x H200 kind, from wherever the committed results stand.
# Runs from a clean export of a commit (.data/tree.tgz: `git archive --format=tar --add-file=COMMIT HEAD |
# gzip > .data/tree.tgz` with the commit hash in ./COMMIT), so uncommitted work never reaches a run. The
# committed run files are copied into the sweep's folder first, so finished runs are skipped; the stages
# run in order of value (masked LM first: its 8K runs at the per-setting rates of PAPER_SETTING_LR; Performer and
# Combiner at 2K early, since the claims table's "below FLASH in quality" row has no curves yet, and the rest of
# them before seed 2, which only narrows the ranges seed 1 opens), each shared by the machine's GPUs
# (torchrun, one run per process); checkpoints every 3 minutes. Each call waits WAIT_S seconds (default 540)
# and archives the folder (checkpoints left out):
#   bash experiments/2026-11-30-paper-figures/continue.sh start     # first call of a session
#   bash experiments/2026-11-30-paper-figures/continue.sh wait      # the following calls
# Merge: tar xzf results.tgz; cp pf/runs/*.json results/nvidia-h200/paper-figures/runs/; python -m suite.report ...
OUT_DIR=/tmp/pf/paper-figures
LOG=/tmp/pf/plan.log
if [ "$1" = start ]; then
  mkdir -p /tmp/pf /tmp/tree && tar xzf .data/tree.tgz -C /tmp/tree
  cp .data/eltec_eng.jsonl.gz /tmp/pf/
  mkdir -p $OUT_DIR && cp -r /tmp/tree/results/nvidia-h200/paper-figures/runs $OUT_DIR/
  export FLASH_REPRO_ELTEC=/tmp/pf/eltec_eng.jsonl.gz FLASH_REPRO_COMMIT=$(cat /tmp/tree/COMMIT)
  ( cd /tmp/tree && source suite/gpu_env.sh )  # records env.txt (with the commit) into $OUT; no wheels needed
  NPROC=$(nvidia-smi -L | wc -l)  # one process per GPU of the machine (the 2-, 4- or 8-GPU kinds)
  SWEEP="torchrun --standalone --nproc_per_node $NPROC run_all.py --preset paper-figures --out $OUT_DIR --checkpoint-every 3m"
  ( cd /tmp/tree && setsid bash -c "
      $SWEEP --models flash,transformer_plus_plus --seeds 0 --objectives mlm
      $SWEEP --models performer,combiner --seeds 0 --contexts 2048
      $SWEEP --models flash_quad --seeds 0
      $SWEEP --models flash,transformer_plus_plus,flash_quad --seeds 1
      $SWEEP --models performer,combiner --seeds 0
      $SWEEP --models flash,transformer_plus_plus,flash_quad --seeds 2
      $SWEEP
      echo PLAN-DONE" > $LOG 2>&1 < /dev/null & )
  sleep 5
fi
END=$((SECONDS + ${WAIT_S:-540}))
while [ $SECONDS -lt $END ] && ! grep -q PLAN-DONE $LOG; do sleep 10; done
cp $LOG $OUT/plan.log 2>/dev/null
tar czf $OUT/results.tgz -C /tmp/pf --exclude checkpoints paper-figures
nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader
grep -E "\] train:|runs 0/|runs of preset|rror|Traceback" $LOG | cut -c1-200 | tail -30
