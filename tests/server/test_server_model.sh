#!/bin/sh
# tests/server/test_server_model.sh - netdiffd end to end on the REAL embedded
# default model (weights/default/ + conf/classes.json, found as `netdiff
# generate` finds them): the ASan daemon on a loopback port, few sampler
# steps to stay short on the CPU. Byte equality with `netdiff generate` for
# the same class, n, seed, steps, sampler and cfg: one request alone, two
# requests of different classes and options at once (continuous batching
# puts their flows in the same model steps; the bytes must not change), and
# every class in one POST; tshark/scapy/tcpreplay accept the captures;
# /v1/model and /metrics report the real model; SIGTERM exits 0, which under
# LeakSanitizer also means no leak after a session with the model.
. tests/lib.sh
. tests/tools.sh
: "${NETDIFFD:=build/asan/netdiffd}"
CLI=build/netdiff; [ -x "$CLI" ] || CLI=$NETDIFF
if [ ! -f weights/default/netdiff_default.safetensors ] || [ ! -f conf/classes.json ]; then
  skip "no default model in weights/default/"; nd_done; exit 0
fi
unset ND_STANDIN_DRAWER ND_CLASSES
export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# the ASan binary lives in build/asan/: point both binaries at this checkout
export ND_HOME=$(pwd)
PID=
trap '[ -n "$PID" ] && kill -9 $PID 2>/dev/null; rm -rf "$ND_TMP"' EXIT

"$NETDIFFD" --port 0 --max-batch 4 --drain-grace 30 >"$ND_TMP/d.log" 2>&1 &
PID=$!
i=0; while [ $i -lt 600 ] && ! grep -q 'ready\|netdiffd: [^l]' "$ND_TMP/d.log"; do sleep 0.1; i=$((i+1)); done
port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$ND_TMP/d.log")
URL="http://127.0.0.1:$port"
check "daemon loads the default model ($(grep ready "$ND_TMP/d.log" | sed 's/.*(//; s/).*//'))" grep -q ready "$ND_TMP/d.log"
C="curl -s --max-time 300"

# /v1/model: the default model's files, its layout, every class of the table
$C -o "$ND_TMP/model.json" "$URL/v1/model"
ncls=$($CLI classes | wc -l)
check "/v1/model reports the default model, ControlNet, LoRA, layout, $ncls classes" python3 - "$ND_TMP/model.json" "$ncls" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); cfg = json.load(open("weights/default/config.json"))
ok = (d["model"].endswith("weights/default/netdiff_default.safetensors")
      and (d["controlnet"] or "").endswith("weights/default/control_netdiff_canny.safetensors")
      and [l.endswith("weights/default/netdiff_lora.safetensors") for l in d["loras"]] == [True]
      and d["classes"].endswith("conf/classes.json") and d["backend"] == "cpu"
      and d["layout"]["packets"] == cfg["packets"] and d["layout"]["width"] == cfg["width"]
      and d["layout"]["timing_cols"] == cfg["timing_cols"] and d["n_classes"] == int(sys.argv[2])
      and d["load_seconds"] > 0)
if not ok: print("    /v1/model:", d)
sys.exit(0 if ok else 1)
PY

# same_as_cli NAME FILE CLI-ARGS...: the daemon's FILE equals netdiff generate's bytes
same_as_cli() {
  n=$1; f=$2; shift 2
  $CLI generate "$@" -o "$ND_TMP/cli.pcap" 2>"$ND_TMP/cli.err" || echo "    netdiff generate: $(tail -1 "$ND_TMP/cli.err")"
  check "$n: equals netdiff generate's bytes ($(wc -c <"$f") bytes)" cmp -s "$f" "$ND_TMP/cli.pcap"
}
npk() { capinfos -Mc "$1" | awk '/Number of packets/ {print $NF}'; }

# one request alone (TCP class), through every tool
$C -o "$ND_TMP/ssh.pcap" "$URL/generate?class=ssh&n=6&seed=7&steps=3"
same_as_cli "ssh n=6 steps=3 alone" "$ND_TMP/ssh.pcap" --class ssh -n 6 --seed 7 --steps 3
# img2img from the class templates, as a query parameter and a JSON key
$C -o "$ND_TMP/ssh_s.pcap" "$URL/generate?class=ssh&n=3&seed=7&steps=4&strength=0.5"
same_as_cli "ssh strength=0.5 (img2img)" "$ND_TMP/ssh_s.pcap" --class ssh -n 3 --seed 7 --steps 4 --strength 0.5
$C -o "$ND_TMP/ssh_j.pcap" -H 'Content-Type: application/json' -d '{"class": "ssh", "n": 3, "seed": 7, "steps": 4, "strength": 0.5}' "$URL/v1/generate"
check "strength as a JSON key: the query's bytes" cmp -s "$ND_TMP/ssh_s.pcap" "$ND_TMP/ssh_j.pcap"
nd_check_capture "$ND_TMP/ssh.pcap" "$(npk "$ND_TMP/ssh.pcap")"

# two requests at once, different classes, steps, samplers and cfg: their
# flows share model steps (the metrics show batches of more than one
# request's per_request share)
$C -o "$ND_TMP/dns.pcap" "$URL/generate?class=dns&n=4&seed=21&steps=2&sampler=euler_a&cfg=5" &
c1=$!
$C -o "$ND_TMP/zoom.pcapng" "$URL/generate?class=zoom&n=4&seed=22&steps=3&format=pcapng" &
c2=$!
wait $c1; wait $c2
same_as_cli "dns euler_a cfg=5 steps=2, concurrent" "$ND_TMP/dns.pcap" --class dns -n 4 --seed 21 --steps 2 --sampler euler_a --cfg 5
same_as_cli "zoom pcapng steps=3, concurrent" "$ND_TMP/zoom.pcapng" --class zoom -n 4 --seed 22 --steps 3 --format pcapng
$C -o "$ND_TMP/m1.txt" "$URL/metrics"
# per_request is 2 of the batch of 4: a step with more than 2 flows holds both requests' flows
big=$(awk '/^netdiffd_batch_size_bucket\{le="2"\}/{a=$2} /^netdiffd_batch_size_count/{n=$2} END{print n-a}' "$ND_TMP/m1.txt")
check "concurrent requests shared model steps ($big steps with 3-4 flows)" test "${big:-0}" -gt 0

# every class of the table in one POST (one flow each, 2 steps)
spec=$($CLI classes | cut -f1 | awk '{printf "%s%s=1", (NR > 1 ? "," : ""), $1}')
json=$($CLI classes | cut -f1 | awk 'BEGIN{printf "{\"seed\": 5, \"steps\": 2, \"classes\": {"} {printf "%s\"%s\": 1", (NR > 1 ? ", " : ""), $1} END{printf "}}"}')
$C -o "$ND_TMP/all.pcap" -H 'Content-Type: application/json' -d "$json" "$URL/v1/generate"
same_as_cli "all $ncls classes in one POST" "$ND_TMP/all.pcap" --class "$spec" --seed 5 --steps 2
nd_check_capture "$ND_TMP/all.pcap" "$(npk "$ND_TMP/all.pcap")"

# the metrics count the real model's work
$C -o "$ND_TMP/m2.txt" "$URL/metrics"
flows=$(awk '/^netdiffd_flows_generated_total\{/{s+=$2} END{print s+0}' "$ND_TMP/m2.txt")
check "metrics: $flows flows generated (6 + 3 + 3 + 4 + 4 + $ncls)" test "$flows" -eq $((20 + ncls))
check "metrics: model load time, build info with the cpu backend, GPU memory 0 on the CPU" sh -c \
  "grep -q '^netdiffd_model_load_seconds [0-9.]*[1-9]' '$ND_TMP/m2.txt' && grep -q '^netdiffd_build_info{.*backend=\"cpu\"} 1' '$ND_TMP/m2.txt' && grep -q '^netdiffd_gpu_memory_used_bytes 0$' '$ND_TMP/m2.txt'"

kill -TERM $PID
i=0; while kill -0 $PID 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
wait $PID; rc=$?; PID=
check "SIGTERM: exit 0 (no leak under LeakSanitizer after the model session) (rc $rc)" test "$rc" = 0
[ "$rc" = 0 ] || tail -20 "$ND_TMP/d.log"
nd_done
