#!/bin/sh
# Real flows through encode -> decode (repair on): every packet opens in
# tshark with checksum validation on, no header is malformed, and no DNS or
# mDNS message is: their payloads (UDP 53, 5353) are shaped into well-formed
# messages of the drawn length. (Other application protocols still get
# random payload bytes, which their dissectors may call malformed.)
. tests/lib.sh
for rel in apps/netflix/ndpi_netflix__netflix.pcap protocols/dns/zeek_dns-edns-ecs.pcap \
           protocols/dns/ndpi_dns_ambiguous_names.pcap iot/HueBridge; do
  f="$ND_TESTDATA/$rel"
  rm -rf "$ND_TMP/img"
  $NETDIFF encode "$f" --images "$ND_TMP/img" 2>/dev/null
  $NETDIFF decode "$ND_TMP/img" --seed 3 -o "$ND_TMP/out.pcap" 2>/dev/null || { fail "$rel: decode"; continue; }
  T="tshark -n -r $ND_TMP/out.pcap -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE"
  all=$($T -T fields -e frame.number 2>/dev/null | wc -l)
  dns=$($T -Y "dns || mdns" -T fields -e frame.number 2>/dev/null | wc -l)
  bad=$($T -Y '(_ws.malformed && (dns || mdns || !(tcp.payload || udp.payload))) || ip.checksum.status == 0 || tcp.checksum.status == 0 || udp.checksum.status == 0' \
        -T fields -e frame.protocols 2>/dev/null)
  if [ "$all" -gt 0 ] && [ -z "$bad" ]; then ok "$rel: $all packets ($dns DNS/mDNS), none malformed there, no bad checksum"
  else fail "$rel: $(echo "$bad" | sort | uniq -c | head -3 | tr '\n' ' ')"; fi
done
nd_done
