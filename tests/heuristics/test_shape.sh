#!/bin/sh
# tests/heuristics/test_shape.sh - payload shaping (heuristics/shape.c):
# flows on every port repair shapes, at every payload length (0..300, then
# every 7th to 1472; TCP segments of many lengths both ways), through
# repair, checked by tshark: each protocol is dissected as itself, and no
# packet is malformed or has an expert error in any dissector, except
# lengths no message of the protocol can have (tests/tools.sh lists them).
. tests/lib.sh
SAMPLE=build/heuristics/shape_sample
SEED=${ND_SEED:-$(date +%s)}
echo "  seed $SEED (replay with ND_SEED=$SEED)"
P="$ND_TMP/shape.pcap"
out=$("$SAMPLE" "$P" "$SEED") || { fail "shape_sample"; nd_done; exit 1; }
npk=${out#* }
echo "  ${out% *} flows, $npk packets"
T="tshark -n -r $P"
for p in dns mdns ntp dhcp ssdp rip ripng tls ssh; do
  c=$($T -Y "$p" -T fields -e frame.number 2>/dev/null | wc -l)
  check "$p dissected ($c packets)" [ "$c" -gt 30 ]
done
# HTTP: request and response headers open the streams; the bodies they
# announce outlast the capture, so tshark shows every segment as part of
# a PDU still being reassembled, none as malformed
q=$($T -o tcp.desegment_tcp_streams:FALSE -Y 'http.request.method == "POST"' -T fields -e frame.number 2>/dev/null | wc -l)
r=$($T -o tcp.desegment_tcp_streams:FALSE -Y 'http.response.code == 200' -T fields -e frame.number 2>/dev/null | wc -l)
check "http: a request and a response header per stream ($q, $r)" [ "$q" -ge 2 -a "$r" -ge 2 ]
. tests/tools.sh
nd_check_capture "$P" "$npk"
nd_done
