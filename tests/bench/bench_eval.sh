#!/bin/sh
# tests/bench/bench_eval.sh - wall time of `netdiff eval` (release build) on
# the shared test captures: best of 3 runs per case, with --json and --html.
: "${ND_TESTDATA:=../shared/testdata}"
T=$ND_TESTDATA
B=${NETDIFF:-build/netdiff}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ndbench.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
printf '%-34s %8s %8s %9s %9s\n' case real_pk synth_pk best_s pk_per_s
run_case() {
  name=$1; shift
  best=""
  for i in 1 2 3; do
    s=$(date +%s.%N)
    "$B" eval "$@" --json "$tmp/r.json" --html "$tmp/r.html" >"$tmp/r.txt" 2>"$tmp/err" ||
      { echo "$name: failed: $(cat "$tmp/err")"; return; }
    e=$(date +%s.%N)
    t=$(echo "$e - $s" | bc)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" -eq 1 ]; then best=$t; fi
  done
  rp=$(sed -n 's/.*real [0-9]* flows \/ \([0-9]*\) packets.*/\1/p' "$tmp/r.txt")
  sp=$(sed -n 's/.*synth [0-9]* \/ \([0-9]*\).*/\1/p' "$tmp/r.txt" | head -1)
  printf '%-34s %8s %8s %9.3f %9.0f\n' "$name" "$rp" "$sp" "$best" \
    "$(echo "($rp + $sp) / $best" | bc -l)"
}
run_case "netflix vs zoom" "$T/apps/netflix" "$T/apps/zoom"
run_case "netflix vs NetDiffusion sample" "$T/apps/netflix" \
  "$T/nprint/SYNTHETIC_netdiffusion_generated_netflix_5.pcap" --no-fin-rst
run_case "apps vs iot" "$T/apps" "$T/iot"
run_case "protocols vs iot, --labels" "$T/protocols" "$T/iot" --labels "$T/flows.csv"
run_case "iot vs itself (memorization heavy)" "$T/iot" "$T/iot"
