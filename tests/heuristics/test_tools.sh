#!/bin/sh
# tests/heuristics/test_tools.sh - repaired flows of every kind (uniform
# random bits, real flows with 0.1%..50% bits flipped, all-vacant, single
# rows) in one batch pcap, checked by real tools:
#   tshark with checksum validation: no bad checksum, no malformed header;
#     application dissectors are listed, not failed (random bits draw
#     random ports, and tshark has a dissector with its own message format
#     on hundreds of them; test_shape.sh and test_decode_real.sh require
#     zero on the ports repair shapes and on real flows of every class);
#   scapy: every packet parses into Ether / IP|IPv6 / TCP|UDP|ICMP|ICMPv6;
#   tcpreplay into lo inside a fresh network namespace, after tcprewrite
#     maps the IPv4 pools into 127.0.0.0/8: every packet sent, none failed.
. tests/lib.sh
SAMPLE=build/heuristics/repair_sample
FLOWS=${ND_REPAIR_FLOWS:-600}
SEED=${ND_SEED:-$(date +%s)}
echo "  seed $SEED (replay with ND_SEED=$SEED)"
P="$ND_TMP/s.pcap"
out=$(ND_TESTDATA="$ND_TESTDATA" "$SAMPLE" "$P" "$FLOWS" "$SEED") || { fail "repair_sample"; nd_done; exit 1; }
npk=${out#* }
echo "  $FLOWS flows, $npk packets"
check "sample has packets" [ "$npk" -gt 100 ]

# same seed, same bytes
ND_TESTDATA="$ND_TESTDATA" "$SAMPLE" "$ND_TMP/s2.pcap" "$FLOWS" "$SEED" >/dev/null
check "same seed, same bytes" cmp -s "$P" "$ND_TMP/s2.pcap"

. tests/tools.sh
nd_check_capture "$P" "$npk" random-ports
nd_done
