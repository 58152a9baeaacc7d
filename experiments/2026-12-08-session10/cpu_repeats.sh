#!/usr/bin/env bash
# Session 10: FLASH's and Transformer++'s CPU step times twice more, at the commit of cpu_paper_speed.sh's sweep
# (b8a6e1e), each repeat into its own folder (a run id is its configuration, so one folder holds one run of it):
# the platform tables take the median over the runs of the newest commit, across folders. Why: on this VM the same
# step measured minutes apart differed by up to 27% (results/amd-epyc-2c/scratch/timing-repeat against the
# sweep; NOTES entry 31), and FLASH over Transformer++ is what the CPU's claims rows divide.
#   bash experiments/2026-12-08-session10/cpu_repeats.sh       (from the repository root; nothing else running)
set -euo pipefail
ROOT=$(pwd)
COMMIT=b8a6e1e10906e7353406f21fea15ff407c8828ea
TREE=/tmp/cpu-repeats-tree
[ -d $TREE ] || git worktree add -q --detach $TREE $COMMIT
cd $TREE  # a clean checkout of the commit: its runs record that commit, not dirty
for n in 1 2; do
  common=(--preset paper-speed --device cpu --precision fp32 --no-compile --timed-steps 2
          --models flash,transformer_plus_plus --out "$ROOT/results/amd-epyc-2c/paper-speed-repeat-$n")
  python run_all.py "${common[@]}" --objectives clm --contexts 512,1k,2k --tokens-per-step 2048
  python run_all.py "${common[@]}" --objectives mlm --contexts 512,2k --tokens-per-step 2048
  python run_all.py "${common[@]}" --objectives clm --contexts 4k --tokens-per-step 4096
  python run_all.py "${common[@]}" --objectives clm,mlm --contexts 8k --tokens-per-step 8192
done
