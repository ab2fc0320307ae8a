#!/bin/sh
# Real flows of every class (the smallest capture of each class folder in
# the test data, plus the DNS files) through encode -> decode (repair on),
# all in one capture: every packet opens in tshark with checksum validation
# on, no bad checksum, and no malformed packet or expert error in any
# dissector, application ones included (repair shapes payloads into the
# port's protocol; only lengths no message of the protocol can have are
# allowed, tests/tools.sh), scapy parses it, tcpreplay sends it.
. tests/lib.sh
. tests/tools.sh
n=0
mkdir -p "$ND_TMP/img"
for d in "$ND_TESTDATA"/apps/* "$ND_TESTDATA"/iot/* "$ND_TESTDATA"/protocols/*; do
  [ -d "$d" ] || continue
  # shellcheck disable=SC2012
  f=$(ls -S "$d" | grep -E '\.(pcap|pcapng|cap)(\.gz)?$' | tail -1)
  [ -n "$f" ] || continue
  n=$((n + 1))
  $NETDIFF encode "$d/$f" --images "$ND_TMP/img/$n" >/dev/null 2>&1 || fail "$d/$f: encode"
done
for rel in protocols/dns/zeek_dns-edns-ecs.pcap protocols/dns/ndpi_dns_ambiguous_names.pcap; do
  n=$((n + 1))
  $NETDIFF encode "$ND_TESTDATA/$rel" --images "$ND_TMP/img/$n" >/dev/null 2>&1 || fail "$rel: encode"
done
echo "  $n captures, $(ls "$ND_TMP"/img/*/ | grep -c png) flows"
$NETDIFF decode "$ND_TMP"/img/* --seed 3 -o "$ND_TMP/out.pcap" >/dev/null 2>&1 || fail "decode"
npk=$(tshark -n -r "$ND_TMP/out.pcap" -T fields -e frame.number 2>/dev/null | wc -l)
dns=$(tshark -n -r "$ND_TMP/out.pcap" -Y "dns || mdns" -T fields -e frame.number 2>/dev/null | wc -l)
echo "  $npk packets ($dns DNS/mDNS)"
check "decoded flows have packets" [ "$npk" -gt 1000 ]
nd_check_capture "$ND_TMP/out.pcap" "$npk"
nd_done
