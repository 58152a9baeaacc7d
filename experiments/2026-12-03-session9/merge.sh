# Merge what a session-9 device call brought back into results/, then redraw what depends on it.
#   bash experiments/2026-12-03-session9/merge.sh call1 /work/.device/N     # call1.sh's results.tgz and logs
#   bash experiments/2026-12-03-session9/merge.sh call2 /work/.device/N     # call2.sh's
#   bash experiments/2026-12-03-session9/merge.sh one-gpu /work/.device/N   # one-gpu-*.sh's, session 10's checks.sh
#   CARD=nvidia-h100 bash ... merge.sh ...                                  # a call that ran on an H100
#   bash experiments/2026-12-03-session9/merge.sh figures /work/.device/N   # a continue.sh call's
# Run from the repository root. New run files only (cp -n), except the re-timings of call 1 (jax-paper-speed,
# jax-gpu-speed) and call 2's JAX FLASH seed 0, whose run ids are session 8's runs' (they replace them; NOTES
# entry 24 keeps the old numbers). Then suite.report on every folder touched, suite.platforms, the README's
# claims table, suite.backend_parity; prints git status. Commit after reading the tables.
set -euo pipefail
what=$1 dev=$2
H=results/${CARD:-nvidia-h200}  # CARD=nvidia-h100 for a call that ran on an H100
T=$(mktemp -d)
tar xzf "$dev/results.tgz" -C "$T"
touched=()
runs_into() {  # runs_into SRC_FOLDER DEST_FOLDER [overwrite]
  mkdir -p "$2/runs"
  if [ "${3:-}" = overwrite ]; then cp "$1"/runs/*.json "$2/runs/"; else cp -n "$1"/runs/*.json "$2/runs/"; fi
  touched+=("$2")
}
case $what in
  call1|call2|one-gpu)
    # (one-gpu: one-gpu-1.sh's or one-gpu-2.sh's folders, which are call1's and call2's: every folder present)
    # the re-timings keep session 8's run ids (a run id is its configuration): they replace those runs
    for f in jax-paper-speed jax-gpu-speed; do [ -d "$T/$f/runs" ] && runs_into "$T/$f" "$H/$f" overwrite; done
    for f in jax-train-100 mlm-8k-lr mlm-lr paper-speed; do [ -d "$T/$f/runs" ] && runs_into "$T/$f" "$H/$f"; done
    if [ -d "$T/jax-profile-qkv" ]; then mkdir -p $H/jax/profile-session9 && cp "$T"/jax-profile-qkv/* $H/jax/profile-session9/; fi
    for f in parity-pytorch parity-jax; do [ -d "$T/$f/runs" ] && runs_into "$T/$f" "$H/gpu-quality"; done
    [ -d "$T/parity-jax-flash-s0/runs" ] && runs_into "$T/parity-jax-flash-s0" "$H/gpu-quality" overwrite
    if [ -d "$T/global-form" ]; then mkdir -p "$H/global-form" && cp "$T"/global-form/* "$H/global-form/"; fi
    [ -d "$T/performer-chunk/runs" ] && runs_into "$T/performer-chunk" "$H/performer-chunk"
    [ -d "$T/quad-kernel/runs" ] && runs_into "$T/quad-kernel" "$H/quad-kernel"
    # the call's logs, named by the device call's number
    mkdir -p $H/logs-session9 && for l in "$dev"/log-*.txt; do cp "$l" "$H/logs-session9/$(basename "$dev")-$(basename "$l")"; done
    ;;
  figures)
    runs_into "$T/paper-figures" results/nvidia-h200/paper-figures
    [ -f "$dev/plan.log" ] && cat "$dev/plan.log" >> results/nvidia-h200/paper-figures/log-session9.txt
    ;;
  *) echo "unknown call '$what': call1, call2, one-gpu or figures" >&2; exit 2 ;;
esac
[ -f "$dev/env.txt" ] && for d in "${touched[@]}"; do [ -f "$d/env.txt" ] || cp "$dev/env.txt" "$d/"; done
for d in $(printf '%s\n' "${touched[@]}" | sort -u); do python -m suite.report "$d" > /dev/null; done
# the learning curves' folder is the H200's whatever card ran a call (curves do not depend on the card)
python -m suite.platforms results/nvidia-h200/paper-figures > /dev/null
[ -f $H/gpu-quality/runs.csv ] && python -m suite.backend_parity $H/gpu-quality > /dev/null
python -m suite.backend_parity results/nvidia-h200/gpu-quality results/nvidia-h100/gpu-quality \
  --out results/platforms/backend-parity > /dev/null
python - <<'EOF'
# the README's claims table is tables/claims.md's (tests/test_claims.py checks it)
readme = open("README.md").read().split("\n")
claims = [l for l in open("results/platforms/tables/claims.md").read().split("\n") if l.startswith("|")]
i = next(k for k, l in enumerate(readme) if l.startswith("| claim (Hua et al., 2022)"))
j = i
while j < len(readme) and readme[j].startswith("|"):
    j += 1
readme[i:j] = claims
open("README.md", "w").write("\n".join(readme))
EOF
rm -rf "$T"
git status --short | head -40
