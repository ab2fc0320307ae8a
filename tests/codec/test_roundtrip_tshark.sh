#!/bin/sh
# pcap -> nPrint rows (netdiff encode) -> pcap (netdiff decode --no-repair)
# gives back every header field, checked field by field with tshark against
# the original capture.
. tests/lib.sh
command -v tshark >/dev/null || { fail "tshark not installed (deploy/install-deps.sh)"; nd_done; exit 1; }
FIELDS="ip.version ip.hdr_len ip.dsfield ip.len ip.id ip.flags ip.frag_offset ip.ttl ip.proto ip.checksum ip.src ip.dst ipv6.tclass ipv6.flow ipv6.plen ipv6.nxt ipv6.hlim ipv6.src ipv6.dst tcp.srcport tcp.dstport tcp.seq_raw tcp.ack_raw tcp.hdr_len tcp.flags tcp.window_size_value tcp.checksum tcp.urgent_pointer tcp.options udp.srcport udp.dstport udp.length udp.checksum icmp.type icmp.code icmp.checksum"
fields() {
  args=""; for f in $FIELDS; do args="$args -e $f"; done
  # shellcheck disable=SC2086
  # ICMP errors quote an inner IP/UDP/TCP header that nPrint does not encode
  # (only the 8-byte ICMP header): blank the transport fields of ICMP lines.
  tshark -r "$1" -Y "$2" -o ip.defragment:FALSE -o ipv6.defragment:FALSE -T fields -E occurrence=f $args 2>/dev/null |
    awk -F'\t' -v OFS='\t' '{ if ($34 != "") for (i = 20; i <= 33; i++) $i = ""; print }'
}
for rel in apps/netflix/ndpi_netflix__netflix.pcap apps/meet/ndpi_stun_google_meet__meet.pcapng \
           protocols/tls/nprint_example_port443.pcap protocols/dns/dpkt_examples_data_dns_icmp.pcap \
           parser/sll_tcpdump_resp_1_benchmark.pcap iot/HueBridge \
           apps/reddit/ndpi_reddit__reddit.pcap parser/rawip_ndpi_ocs.pcap; do
  f="$ND_TESTDATA/$rel"
  [ -d "$f" ] && f=$(ls "$f"/*.pcap | head -1)
  $NETDIFF encode "$f" -o "$ND_TMP/a.csv" 2>"$ND_TMP/err" &&
  $NETDIFF decode --no-repair "$ND_TMP/a.csv" -o "$ND_TMP/b.pcap" 2>>"$ND_TMP/err" || { fail "$rel: $(cat "$ND_TMP/err")"; continue; }
  # what nPrint encodes: IPv4/IPv6 carrying TCP, UDP or ICMP (not ICMPv6)
  fields "$f" "((ip.proto == 1 or ip.proto == 6 or ip.proto == 17) and not ipv6) or ((ipv6.nxt == 6 or ipv6.nxt == 17) and not ip)" >"$ND_TMP/orig"
  fields "$ND_TMP/b.pcap" "" >"$ND_TMP/back"
  n=$(wc -l <"$ND_TMP/orig")
  if [ "$n" -gt 0 ] && cmp -s "$ND_TMP/orig" "$ND_TMP/back"; then ok "$rel: $n packets, every header field equal"
  else fail "$rel: $(diff "$ND_TMP/orig" "$ND_TMP/back" | head -4 | tr '\n' ' ')"; fi
done
nd_done
