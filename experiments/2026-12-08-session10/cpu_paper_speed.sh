#!/usr/bin/env bash
# Session 10 (no GPU lent): this CPU's step times for all seven models at every paper-figures setting, at one
# commit, so that the AMD EPYC (2 cores) platform table covers every model whose curves come in (issue 11).
# Session 5/6 timed FLASH, Transformer++ and FLASH-Quad only, at older commits (FLASH before the one-GEMM chunk
# form). Same protocol as then (results/amd-epyc-2c/README.md): eager fp32, 2 timed steps after the preset's
# 3 warm-up steps, tokens per step scaled down (2,048 up to 2K, 4,096 at 4K, 8,192 at 8K; the platform tables
# scale per token to 65,536). --fresh: the earlier records move to superseded/. FLASH-Quad at 8K is left out:
# fp32 at 8K reached 21.5 GiB of this 23 GiB machine in session 6 (it builds T x T scores per layer). The JAX rows
# of session 5 (FLASH and Transformer++, causal 512 / 2K / 8K) are timed again too, so that no row of this folder
# comes from another host: the device name now carries the CPU's vector extension (suite/provenance.py), as this
# VM's "AMD EPYC" took 1.3x-1.9x longer per step than session 5/6's host (results/NOTES.md, entry 31).
# Run with nothing else on the machine (2 cores). The commit and dirty flag are fixed at the start, from the tree
# outside results/ (each call rewrites the tracked runs.csv, which would mark the later calls' runs dirty).
set -euo pipefail
cd "$(dirname "$0")/../.."
export FLASH_REPRO_COMMIT=$(git rev-parse HEAD)
FLASH_REPRO_DIRTY=0
[ -n "$(git status --porcelain --untracked-files=no -- . ':!results')" ] && FLASH_REPRO_DIRTY=1
export FLASH_REPRO_DIRTY
OUT=results/amd-epyc-2c/paper-speed
common=(--preset paper-speed --device cpu --precision fp32 --no-compile --timed-steps 2 --out "$OUT" --fresh)
python run_all.py "${common[@]}" --objectives clm --contexts 512,1k,2k --tokens-per-step 2048
python run_all.py "${common[@]}" --objectives mlm --contexts 512,2k --tokens-per-step 2048
python run_all.py "${common[@]}" --objectives clm --contexts 4k --tokens-per-step 4096
python run_all.py "${common[@]}" --objectives clm,mlm --contexts 8k --tokens-per-step 8192 \
  --models transformer,transformer_plus,transformer_plus_plus,performer,combiner,flash
python run_all.py "${common[@]}" --backend jax --models flash,transformer_plus_plus --objectives clm \
  --contexts 512,2k --tokens-per-step 2048
python run_all.py "${common[@]}" --backend jax --models flash,transformer_plus_plus --objectives clm \
  --contexts 8k --tokens-per-step 8192
