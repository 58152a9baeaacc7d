# Sourced by session 9's call scripts, from the repository root on the device machine.
#   start_call FOLDER   unpack the clean export of a commit (.data/tree.tgz, with the commit in ./COMMIT; see
#                       call1.sh's header) into /tmp/tree and cd there; ELTeC beside it; FLASH_REPRO_COMMIT set
#                       before suite/gpu_env.sh records env.txt into $OUT; FOLDER (every sweep's results under
#                       it) archived into $OUT/results.tgz every 15 s
#   end_call            the last archive, the logs ($S/log-*.txt) into $OUT, and their outcome lines
start_call() {
  S=$1
  mkdir -p "$S" /tmp/tree && tar xzf .data/tree.tgz -C /tmp/tree && cp .data/eltec_eng.jsonl.gz /tmp/
  cd /tmp/tree
  export FLASH_REPRO_COMMIT=$(cat COMMIT) FLASH_REPRO_ELTEC=/tmp/eltec_eng.jsonl.gz
  source suite/gpu_env.sh
  (while sleep 15; do tar czf "$OUT/results.tgz" -C "$S" . 2>/dev/null; done) &
  ARCHIVER=$!
}

end_call() {
  kill $ARCHIVER 2>/dev/null; sleep 1
  tar czf "$OUT/results.tgz" -C "$S" .
  cp "$S"/log-*.txt "$OUT/"
  grep -hE " ok | oom|rror|Traceback" "$S"/log-*.txt | cut -c1-200 | tail -40
}
