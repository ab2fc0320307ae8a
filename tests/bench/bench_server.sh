#!/bin/sh
# tests/bench/bench_server.sh - netdiffd under load from a second process on
# loopback (tests/bench/loadclient.py: 1, 8, 64 concurrent clients, SECS
# seconds each), against `netdiff generate` in one process with the same
# options, in the same run.
#
# The drawer: the real embedded default model (weights/default/,
# conf/classes.json) at STEPS sampler steps (default 4) when it is there;
# the stand-in drawer (ND_STANDIN_DRAWER=1: class templates plus seeded
# noise, on a table built from the test captures) with STANDIN=1 or without
# the model - then it measures the HTTP + engine + repair path, not the UNet.
#
# Fair comparison: the CLI runs at each batch of BATCHES and its best rate
# (its own flows/s: drawing + repair + writing, model load left out) is the
# bar; the daemon then runs with that batch as --max-batch, and the CLI runs
# again after the load (the machine is shared: the better run is the bar).
# The daemon's flows/s are the flows it streamed during the last two thirds
# of each level's window (from /metrics: steady state, no ramp-up).
TD=${ND_TESTDATA:-../shared/testdata}
T=$(mktemp -d /tmp/ndbench.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$T"' EXIT
if [ -f weights/default/netdiff_default.safetensors ] && [ -f conf/classes.json ] && [ -z "$STANDIN" ]; then
  unset ND_STANDIN_DRAWER
  MODE="default model, $((${STEPS:=4})) steps (ddim, cfg 7.5)"
  CLASSES=conf/classes.json; CLS=${CLS:-http}
  SECS=${SECS:-60}; N=${N:-1}; CLI_FLOWS=${CLI_FLOWS:-48}
  OPTS="--steps $STEPS"; Q="steps=$STEPS"
else
  export ND_STANDIN_DRAWER=1; MODE="stand-in drawer (no UNet)"
  build/netdiff classes build "$TD/protocols/ssh/zeek_ssh_sshguess.pcap" "$TD/apps/zoom/ndpi_zoom_p2p__zoom.pcapng" \
    --labels "$TD/flows.csv" --packets 32 --templates 3 --min-flows 2 -o "$T/classes.json" >/dev/null 2>&1
  CLASSES=$T/classes.json; CLS=${CLS:-zoom}
  SECS=${SECS:-5}; N=${N:-10}; CLI_FLOWS=${CLI_FLOWS:-4000}
  OPTS=""; Q=""
fi
echo "drawer: $MODE; class $CLS; $(nproc) cores"

# the CLI in one process at each batch; the best is the bar
cli_rate() { # BATCH: r = the CLI's own flows/s, cpu = its CPU ms per flow (model load included)
  cpu=$(python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[2:], stderr=open(sys.argv[1], "w"))
r = resource.getrusage(resource.RUSAGE_CHILDREN); print(r.ru_utime + r.ru_stime)' "$T/cli.err" \
    build/netdiff generate --classes "$CLASSES" --class "$CLS" -n "$CLI_FLOWS" $OPTS --batch "$1" -o "$T/cli.pcap")
  cpu=$(echo "$cpu * 1000 / $CLI_FLOWS" | bc -l)
  r=$(sed -n 's/.*(\([0-9.]*\) flows\/s.*/\1/p' "$T/cli.err")
}
best=0; BATCH=
for b in ${BATCHES:-4 8 16}; do
  cli_rate "$b"
  printf 'netdiff generate %s --batch %-3s %d flows: %8.2f flows/s, %.2f CPU ms/flow\n' "$OPTS" "$b" "$CLI_FLOWS" "$r" "$cpu"
  if [ "$(echo "$r > $best" | bc -l)" = 1 ]; then best=$r; BATCH=$b; cli_cpu=$cpu; fi
done
cli=$best

build/netdiffd --classes "$CLASSES" --port 0 --max-batch "$BATCH" --queue 256 >"$T/log" 2>&1 &
PID=$!
i=0; while [ $i -lt 600 ] && ! grep -q ready "$T/log"; do sleep 0.1; i=$((i+1)); done
PORT=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$T/log")
rss() { awk '/VmRSS/{print $2}' /proc/$PID/status; }
ticks() { awk '{print $14 + $15}' /proc/$PID/stat; }
flows() { curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^netdiffd_flows_generated_total\{/{s += $2} END {print s + 0}'; }
echo "netdiffd --max-batch $BATCH (the CLI's best batch); GET /generate?class=$CLS&n=$N${Q:+&$Q}; ${SECS}s per level"
r0=$(rss)
echo "clients    req/s   flows/s   p50(ms)   p99(ms)  ttff50(ms) errors"
RSS="$r0"
for c in 1 8 64 64; do
  k0=$(ticks); f0=$(flows)
  python3 tests/bench/loadclient.py 127.0.0.1 "$PORT" $c "$SECS" "$CLS" "$N" "$Q" | tee -a "$T/rows"
  RSS="$RSS / $(rss)"
  d_cpu=$(echo "($(ticks) - $k0) * 1000 / $(getconf CLK_TCK) / ($(flows) - $f0)" | bc -l)
done
curl -s "http://127.0.0.1:$PORT/metrics" >"$T/m"
bs=$(awk '/^netdiffd_batch_size_sum/{s=$2} /^netdiffd_batch_size_count/{n=$2} END{if(n) printf "%.2f", s/n}' "$T/m")
echo "mean batch: $bs of $BATCH; RSS before / after each level (KiB): $RSS"
# the machine is shared: the CLI again right after, at the same batch; the
# bar is the better of its two runs
cli_rate "$BATCH"
printf 'netdiff generate %s --batch %-3s %d flows: %8.2f flows/s, %.2f CPU ms/flow (again, after the load)\n' "$OPTS" "$BATCH" "$CLI_FLOWS" "$r" "$cpu"
if [ "$(echo "$r > $cli" | bc -l)" = 1 ]; then cli=$r; fi
if [ "$(echo "$cpu < $cli_cpu" | bc -l)" = 1 ]; then cli_cpu=$cpu; fi
# CPU per flow does not depend on what else the shared machine runs
printf 'CPU ms per flow: daemon %.2f (last 64-client level, HTTP included, client not), CLI %.2f (better run): %.2fx\n' \
  "$d_cpu" "$cli_cpu" "$(echo "$d_cpu / $cli_cpu" | bc -l)"
f64=$(tail -2 "$T/rows" | awk '{s += $3} END {print s / 2}')
ratio=$(echo "$f64 / $cli" | bc -l)
if [ "$(echo "$f64 >= $cli" | bc -l)" = 1 ]; then v=ok; else v=BELOW; fi
printf '64 clients (mean of the two runs): %.2f flows/s vs CLI %.2f (batch %s, the better run): %.2fx %s\n' "$f64" "$cli" "$BATCH" "$ratio" "$v"
kill -TERM $PID; wait $PID; echo "daemon exit: $?"; PID=
