#!/bin/sh
# Runs every built libFuzzer target for FUZZ_SECONDS (default 10) on a copy of
# its committed seed corpus (tests/fuzz/corpus/NAME/); a crash, leak, timeout or
# sanitizer report fails it. New inputs go to a temporary folder, never into git.
. tests/lib.sh
secs=${FUZZ_SECONDS:-10}
for bin in build/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  work="$ND_TMP/$name"; mkdir -p "$work/corpus" "$work/art"
  [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/corpus/"
  dict=""; [ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
  if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
       -artifact_prefix="$work/art/" $dict "$work/corpus" >"$work/log" 2>&1; then
    runs=$(grep -o 'Done [0-9]* runs' "$work/log" | tail -1)
    ok "$name ($runs in ${secs}s)"
  else
    fail "$name"; tail -30 "$work/log"
    ls "$work/art" 2>/dev/null
  fi
done
nd_done
