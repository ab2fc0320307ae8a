#!/bin/sh
# tests/bench/bench_server.sh - netdiffd under load from a second process on
# loopback (tests/bench/loadclient.py: 1, 8, 64 concurrent clients, bounded
# time each), against `netdiff generate` in one process for the same flows.
# Without the default model (weights/default/, conf/classes.json) it runs
# the stand-in drawer (ND_STANDIN_DRAWER=1) on a class table built from the
# test captures: then it measures the HTTP + engine + repair path, not the
# UNet. SECS (default 5) per level; N flows per request (default 10).
SECS=${SECS:-5}; N=${N:-10}
TD=${ND_TESTDATA:-../shared/testdata}
T=$(mktemp -d /tmp/ndbench.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$T"' EXIT
if [ -f weights/default/model.safetensors ] && [ -f conf/classes.json ] && [ -z "$STANDIN" ]; then
  CLASSES=conf/classes.json; CLS=$(build/netdiff classes --classes $CLASSES | head -1 | cut -d' ' -f1); MODE=model
else
  export ND_STANDIN_DRAWER=1; MODE=standin
  build/netdiff classes build "$TD/protocols/ssh/zeek_ssh_sshguess.pcap" "$TD/apps/zoom/ndpi_zoom_p2p__zoom.pcapng" \
    --labels "$TD/flows.csv" --packets 32 --templates 3 --min-flows 2 -o "$T/classes.json" >/dev/null 2>&1
  CLASSES=$T/classes.json; CLS=zoom
fi
BATCH=${BATCH:-8}
build/netdiffd --classes "$CLASSES" --port 0 --max-batch "$BATCH" --queue 256 >"$T/log" 2>&1 &
PID=$!
i=0; while [ $i -lt 600 ] && ! grep -q ready "$T/log"; do sleep 0.1; i=$((i+1)); done
PORT=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$T/log")
rss() { awk '/VmRSS/{print $2}' /proc/$PID/status; }
echo "drawer: $MODE, class $CLS, $N flows per request, batch $BATCH, ${SECS}s per level, $(nproc) cores"
# the CLI in one process, same flows
TOTAL=$((N * 200)); [ $MODE = model ] && TOTAL=$((N * 2))
t0=$(date +%s.%N)
build/netdiff generate --classes "$CLASSES" --class $CLS -n $TOTAL --batch "$BATCH" -o "$T/cli.pcap" 2>/dev/null
t1=$(date +%s.%N)
cli=$(echo "$TOTAL / ($t1 - $t0)" | bc -l)
printf 'netdiff generate (one process): %d flows, %.1f flows/s\n' $TOTAL "$cli"
r0=$(rss)
echo "clients    req/s   flows/s   p50(ms)   p99(ms) errors"
for c in 1 8 64; do
  python3 tests/bench/loadclient.py 127.0.0.1 "$PORT" $c "$SECS" $CLS "$N" | tee -a "$T/rows"
done
r1=$(rss)
curl -s "http://127.0.0.1:$PORT/metrics" >"$T/m"
ttff=$(awk '/^netdiffd_time_to_first_flow_seconds_sum/{s=$2} /^netdiffd_time_to_first_flow_seconds_count/{n=$2} END{if(n) printf "%.1f", s/n*1000}' "$T/m")
bs=$(awk '/^netdiffd_batch_size_sum/{s=$2} /^netdiffd_batch_size_count/{n=$2} END{if(n) printf "%.2f", s/n}' "$T/m")
echo "mean time to first flow: ${ttff} ms; mean batch: $bs; RSS before/after load: ${r0} / ${r1} KiB"
f64=$(tail -1 "$T/rows" | awk '{print $3}')
if [ "$(echo "$f64 >= $cli" | bc -l)" = 1 ]; then echo "64 clients: ${f64} flows/s >= CLI ${cli}: ok"; else printf '64 clients: %s flows/s < CLI %.1f: BELOW\n' "$f64" "$cli"; fi
kill -TERM $PID; wait $PID; echo "daemon exit: $?"; PID=
