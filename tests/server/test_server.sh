#!/bin/sh
# tests/server/test_server.sh - netdiffd end to end: the real daemon (ASan
# build) on a loopback port with the stand-in drawer (ND_STANDIN_DRAWER=1, a
# class template plus seeded noise: the model path is tested in tests/model
# and tests/gen), real HTTP clients (curl). Byte equality with
# `netdiff generate`, tshark validity, 16 concurrent clients, problem+json
# errors, 429, disconnect -> cancelled flows, SIGHUP reload, SIGTERM drain
# (exit 0, which under LeakSanitizer also means no leak), promtool.
. tests/lib.sh
: "${NETDIFFD:=build/asan/netdiffd}"
CLI=build/netdiff; [ -x "$CLI" ] || CLI=$NETDIFF
export ND_STANDIN_DRAWER=1
TD=$ND_TESTDATA
$CLI classes build "$TD/protocols/ssh/zeek_ssh_sshguess.pcap" "$TD/apps/zoom/ndpi_zoom_p2p__zoom.pcapng" \
  --labels "$TD/flows.csv" --packets 32 --templates 3 --min-flows 2 -o "$ND_TMP/classes.json" >/dev/null 2>&1
check "class table for the tests" test -s "$ND_TMP/classes.json"
PIDS=""
cleanup() { for p in $PIDS; do kill -9 "$p" 2>/dev/null; done; rm -rf "$ND_TMP"; }
trap cleanup EXIT
[ -n "$KEEP" ] && trap "for p in \$PIDS; do kill -9 \$p 2>/dev/null; done" EXIT

# start NAME ARGS...: starts the daemon, sets PID and URL
start() {
  name=$1; shift
  : >"$ND_TMP/$name.log"
  "$NETDIFFD" --classes "$ND_TMP/classes.json" --port 0 "$@" >"$ND_TMP/$name.log" 2>&1 &
  PID=$!; PIDS="$PIDS $PID"
  i=0; while [ $i -lt 100 ] && ! grep -q 'ready' "$ND_TMP/$name.log"; do sleep 0.1; i=$((i+1)); done
  port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$ND_TMP/$name.log")
  URL="http://127.0.0.1:$port"
}
# wait_exit PID SECS: RC = the exit status, or 124 when it does not exit in time
wait_exit() {
  i=0; while kill -0 "$1" 2>/dev/null && [ $i -lt $(($2 * 10)) ]; do sleep 0.1; i=$((i+1)); done
  if kill -0 "$1" 2>/dev/null; then RC=124; return; fi
  wait "$1"; RC=$?
}
C="curl -s --max-time 60"
# code URL [curl args]: the status code, the body in $ND_TMP/body
code() { u=$1; shift; $C -o "$ND_TMP/body" -w '%{http_code}' "$@" "$u"; }
is_problem() { # CODE: body is problem+json with that stable code and a status
  python3 -c "import json,sys; d=json.load(open('$ND_TMP/body')); sys.exit(0 if d.get('code')=='$1' and d.get('status') and d.get('type') and d.get('title') and 'detail' in d else 1)"
}

start main --queue 32 --max-batch 8 --drain-grace 20
check "daemon starts and listens on loopback" test -n "$port"
check "/livez 200" test "$(code "$URL/livez")" = 200
check "/readyz 200 once loaded" test "$(code "$URL/readyz")" = 200

# the same request, the same bytes as netdiff generate
$C -D "$ND_TMP/h1" -o "$ND_TMP/d1.pcap" "$URL/generate?class=ssh&n=20&seed=7"
$CLI generate --classes "$ND_TMP/classes.json" --class ssh -n 20 --seed 7 -o "$ND_TMP/c1.pcap" 2>/dev/null
check "GET /generate n=20 equals netdiff generate's bytes" cmp -s "$ND_TMP/d1.pcap" "$ND_TMP/c1.pcap"
check "200, pcap media type, chunked, file name" sh -c "grep -q '^HTTP/1.1 200' '$ND_TMP/h1' && grep -qi '^Content-Type: application/vnd.tcpdump.pcap' '$ND_TMP/h1' && grep -qi '^Transfer-Encoding: chunked' '$ND_TMP/h1' && grep -qi 'Content-Disposition: attachment; filename=\"netdiff-ssh-7.pcap\"' '$ND_TMP/h1'"
bad=$(tshark -n -r "$ND_TMP/d1.pcap" -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE \
  -Y 'ip.checksum.status == 0 or tcp.checksum.status == 0 or udp.checksum.status == 0 or icmp.checksum.status == 0' -T fields -e frame.number 2>/dev/null | wc -l)
malformed=$(tshark -n -r "$ND_TMP/d1.pcap" -Y _ws.malformed -T fields -e frame.protocols 2>/dev/null |
  awk -F: '{p=$NF} p=="eth"||p=="ethertype"||p=="ip"||p=="ipv6"||p=="tcp"||p=="udp"||p=="icmp"||p=="icmpv6"' | wc -l)
seen=$(tshark -n -r "$ND_TMP/d1.pcap" -T fields -e frame.number 2>/dev/null | wc -l)
check "tshark: $seen packets, $bad bad checksums, $malformed malformed headers" test "$seen" -gt 20 -a "$bad" -eq 0 -a "$malformed" -eq 0

# pcapng with pcapml labels, steps/sampler/cfg accepted
$C -o "$ND_TMP/d2.pcapng" "$URL/generate?class=zoom&n=4&seed=3&format=pcapng&steps=4&sampler=euler_a&cfg=5"
$CLI generate --classes "$ND_TMP/classes.json" --class zoom -n 4 --seed 3 --format pcapng --steps 4 --sampler euler_a --cfg 5 -o "$ND_TMP/c2.pcapng" 2>/dev/null
check "pcapng equals netdiff generate's" cmp -s "$ND_TMP/d2.pcapng" "$ND_TMP/c2.pcapng"
check "pcapng packets carry FLOW,CLASS comments" sh -c "tshark -r '$ND_TMP/d2.pcapng' -T fields -e frame.comment 2>/dev/null | grep -q '^3,zoom$'"

# POST /v1/generate: several classes in one request
$C -o "$ND_TMP/d3.pcap" -H 'Content-Type: application/json' -d '{"classes": {"ssh": 3, "zoom": 2}, "seed": 11}' "$URL/v1/generate"
$CLI generate --classes "$ND_TMP/classes.json" --class ssh=3,zoom=2 --seed 11 -o "$ND_TMP/c3.pcap" 2>/dev/null
check "POST /v1/generate (2 classes) equals netdiff generate's" cmp -s "$ND_TMP/d3.pcap" "$ND_TMP/c3.pcap"

# 16 concurrent clients each get exactly their flows
i=0; CP=""; while [ $i -lt 16 ]; do
  $C -o "$ND_TMP/p$i.pcap" "$URL/generate?class=zoom&n=$((3 + i % 4))&seed=$((100 + i))" & CP="$CP $!"; i=$((i+1))
done
for p in $CP; do wait "$p"; done
ok16=0; i=0; while [ $i -lt 16 ]; do
  $CLI generate --classes "$ND_TMP/classes.json" --class zoom -n $((3 + i % 4)) --seed $((100 + i)) -o "$ND_TMP/q$i.pcap" 2>/dev/null
  cmp -s "$ND_TMP/p$i.pcap" "$ND_TMP/q$i.pcap" && ok16=$((ok16+1)); i=$((i+1))
done
check "16 concurrent clients: $ok16/16 got exactly their flows" test $ok16 -eq 16

# classes, model
check "/v1/classes lists ssh and zoom" sh -c "test \"\$($C '$URL/v1/classes' | python3 -c 'import json,sys; print(\",\".join(c[\"name\"] for c in json.load(sys.stdin)[\"classes\"]))')\" = ssh,zoom"
check "/v1/model tells backend, dtype, layout" sh -c "$C '$URL/v1/model' | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d[\"backend\"]==\"standin\" and d[\"dtype\"] and d[\"layout\"][\"packets\"]==32 else 1)'"

# bad input: each with its code and a problem+json body
t() { # NAME STATUS CODE URL [curl args]
  n=$1; s=$2; k=$3; u=$4; shift 4
  got=$(code "$URL$u" -D "$ND_TMP/hdr" "$@")
  if [ "$got" = "$s" ] && is_problem "$k" && grep -qi '^Content-Type: application/problem+json' "$ND_TMP/hdr"; then ok "$n -> $s $k"; else fail "$n -> $got (want $s $k): $(cat "$ND_TMP/body")"; fi
}
t "missing class" 400 missing_parameter "/generate?n=2"
t "unknown class" 400 unknown_class "/generate?class=netflix&n=2"
check "unknown class lists the known ones" grep -q 'known: ssh, zoom' "$ND_TMP/body"
t "n=0" 400 too_many_flows "/generate?class=ssh&n=0"
t "n over max-n" 400 too_many_flows "/generate?class=ssh&n=100000000"
t "n not a number" 400 bad_parameter "/generate?class=ssh&n=abc"
t "bad sampler" 400 bad_parameter "/generate?class=ssh&sampler=plms"
t "bad steps" 400 bad_parameter "/generate?class=ssh&steps=0"
t "bad cfg" 400 bad_parameter "/generate?class=ssh&cfg=nan"
t "bad strength" 400 bad_parameter "/generate?class=ssh&strength=0"
t "strength above 1" 400 bad_parameter "/generate?class=ssh&strength=1.5"
t "bad format" 400 bad_parameter "/generate?class=ssh&format=csv"
t "negative seed" 400 bad_parameter "/generate?class=ssh&seed=-1"
t "unknown parameter" 400 unknown_parameter "/generate?class=ssh&colour=red"
t "no such route" 404 not_found "/nope"
t "POST /generate" 405 method_not_allowed "/generate?class=ssh" -X POST
t "GET /v1/generate" 405 method_not_allowed "/v1/generate"
t "bad JSON" 400 bad_json "/v1/generate" -H 'Content-Type: application/json' -d '{"classes":'
t "JSON unknown class" 400 unknown_class "/v1/generate" -H 'Content-Type: application/json' -d '{"classes":{"netflix":2}}'
t "JSON count 0" 400 too_many_flows "/v1/generate" -H 'Content-Type: application/json' -d '{"class":"ssh","n":0}'
t "text/plain body" 415 unsupported_media_type "/v1/generate" -H 'Content-Type: text/plain' -d 'class=ssh'
head -c 70000 /dev/zero | tr '\0' ' ' >"$ND_TMP/big.json"
t "body over 64 KiB" 413 body_too_large "/v1/generate" -H 'Content-Type: application/json' --data-binary "@$ND_TMP/big.json"

# SIGHUP reloads the configuration: a token now guards everything but the probes
printf 'token s3cret\nmax-n 50\n' >"$ND_TMP/netdiffd.conf"
kill "$PID" 2>/dev/null  # not this one: the main daemon has no --config; restart with one
wait_exit "$PID" 20
start main2 --config "$ND_TMP/netdiffd.conf" --queue 32 --max-batch 8
printf 'max-n 5000\n' >"$ND_TMP/netdiffd.conf.1"
check "with a token configured: 200 with it" test "$(code "$URL/v1/classes" -H 'Authorization: Bearer s3cret')" = 200
t "without the token" 401 unauthorized "/v1/classes"
t "a wrong token" 401 unauthorized "/metrics" -H 'Authorization: Bearer nope'
check "probes need no token" test "$(code "$URL/livez")" = 200
cp "$ND_TMP/netdiffd.conf.1" "$ND_TMP/netdiffd.conf"
kill -HUP "$PID"; sleep 0.5
check "SIGHUP: token removed, daemon alive" test "$(code "$URL/v1/classes")" = 200
t "SIGHUP: max-n 5000 applies" 400 too_many_flows "/generate?class=ssh&n=5001"

# /metrics passes promtool and shows the work
$C -o /dev/null "$URL/generate?class=zoom&n=2"
$C -o "$ND_TMP/metrics.txt" "$URL/metrics"
check "promtool check metrics" sh -c "promtool check metrics <'$ND_TMP/metrics.txt' >'$ND_TMP/promtool.out' 2>&1"
[ -s "$ND_TMP/promtool.out" ] && cat "$ND_TMP/promtool.out"
for m in netdiffd_http_requests_total netdiffd_flows_generated_total netdiffd_packets_generated_total \
         netdiffd_flows_cancelled_total netdiffd_queue_depth netdiffd_requests_in_flight \
         netdiffd_batch_size_bucket netdiffd_step_duration_seconds_bucket \
         netdiffd_time_to_first_flow_seconds_bucket netdiffd_queue_wait_seconds_bucket \
         netdiffd_gpu_memory_used_bytes netdiffd_model_load_seconds netdiffd_build_info; do
  grep -q "^$m" "$ND_TMP/metrics.txt" || fail "metric $m missing"
done
ok "metrics present"

# SIGTERM drains: readyz 503, new work 503, the stream in flight finishes, exit 0
$C -o "$ND_TMP/drain.pcap" "$URL/generate?class=ssh&n=4000&seed=5" &
CURL=$!
sleep 0.1
kill -TERM "$PID"; sleep 0.2
r503=$(code "$URL/readyz")
g503=$(code "$URL/generate?class=ssh&n=1")
wait $CURL
wait_exit "$PID" 30; rc=$RC
$CLI generate --classes "$ND_TMP/classes.json" --class ssh -n 4000 --seed 5 -o "$ND_TMP/cdrain.pcap" 2>/dev/null
check "SIGTERM: /readyz 503 while draining (got $r503)" test "$r503" = 503
check "SIGTERM: new work refused (got $g503)" test "$g503" = 503
check "SIGTERM: the stream in flight finished whole" cmp -s "$ND_TMP/drain.pcap" "$ND_TMP/cdrain.pcap"
check "SIGTERM: exit 0 (no leak under LSan) (rc $rc)" test "$rc" = 0

# a full queue: 429 + Retry-After; a disconnect cancels the rest (metrics)
start small --queue 1 --max-batch 1
$C --max-time 30 -o "$ND_TMP/long.pcap" "$URL/generate?class=ssh&n=100000" &
CURL=$!
sleep 0.5
t "queue full" 429 queue_full "/generate?class=zoom&n=1"
check "429 carries Retry-After" grep -qi '^Retry-After: [0-9]' "$ND_TMP/hdr"
kill "$CURL"; wait "$CURL" 2>/dev/null
i=0; while [ $i -lt 50 ]; do
  $C -o "$ND_TMP/m2.txt" "$URL/metrics"
  inflight=$(sed -n 's/^netdiffd_requests_in_flight \(.*\)/\1/p' "$ND_TMP/m2.txt")
  cancelled=$(sed -n 's/^netdiffd_flows_cancelled_total \(.*\)/\1/p' "$ND_TMP/m2.txt")
  [ "$inflight" = 0 ] && [ "${cancelled:-0}" -gt 0 ] && break
  sleep 0.1; i=$((i+1))
done
check "disconnect: in-flight 0, $cancelled flows cancelled" test "$inflight" = 0 -a "${cancelled:-0}" -gt 0
check "disconnect: the queue has room again" test "$(code "$URL/generate?class=zoom&n=1")" = 200
kill -TERM "$PID"
wait_exit "$PID" 30
check "second daemon exits 0 on SIGTERM (rc $RC)" test "$RC" = 0
nd_done
