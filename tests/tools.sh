# tests/tools.sh - the tool checks every generated capture must pass (sourced
# after tests/lib.sh): nd_check_capture FILE NPACKETS [random-ports] checks
# that tshark with checksum validation reads every packet with no bad
# checksum and no malformed packet or expert error in any dissector, headers
# and applications alike, that scapy parses every packet into the expected
# layers, and that tcpreplay sends every packet into lo inside a network
# namespace made here, after tcprewrite maps the addresses into 127.0.0.0/8.
#
# Application dissectors: repair shapes payloads into messages of the
# port's protocol (heuristics/shape.c). Two cases are allowed and listed:
#   - a drawn length the protocol cannot have (nd_unfit_length below: RIP
#     and RIPng entries are 20 bytes, DHCP needs 240, NTP 48, DNS 12; an
#     SSH segment of 4 bytes or fewer: tshark 4.0's SSH dissector reads a
#     4-byte length and the data after it from every segment it takes for
#     encrypted, and it takes a whole side for encrypted when that side's
#     first segment is too short to show "SSH-");
#   - with "random-ports" (row sets of random bits), dissectors of ports
#     repair does not shape: such samples hit any of tshark's hundreds of
#     port-registered dissectors, each wanting its own message format.
# Everything else fails the check.

# Reads "frame.protocols<TAB>udp.length<TAB>udp.port<TAB>tcp.port<TAB>tcp.len"
# lines; prints those that a length the protocol cannot hold does not explain.
nd_unfit_length() {
awk -F'\t' '{
  L = $2 - 8; unfit = 0
  if ($2 != "") {
    if ($1 ~ /:(rip|ripng)(:|$)/ && (L < 24 || (L - 4) % 20 != 0)) unfit = 1
    if ($1 ~ /:(dhcp|bootp)(:|$)/ && L < 240) unfit = 1
    if ($1 ~ /:ntp(:|$)/ && L < 48) unfit = 1
    if ($1 ~ /:(dns|mdns)(:|$)/ && L < 12) unfit = 1
  }
  if ($5 != "" && $1 ~ /:ssh(:|$)/ && $5 + 0 <= 4) unfit = 1
  if (!unfit) print
}'
}

nd_check_capture() {
P=$1; npk=$2
T="tshark -n -r $P -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE"
seen=$($T -T fields -e frame.number 2>/dev/null | wc -l)
check "tshark reads every packet ($seen)" [ "$seen" -eq "$npk" ]
bad=$($T -Y 'ip.checksum.status==0 || tcp.checksum.status==0 || udp.checksum.status==0 || icmp.checksum.status==0 || icmpv6.checksum.status==0' -T fields -e frame.number 2>/dev/null | wc -l)
check "tshark: zero bad checksums ($bad)" [ "$bad" -eq 0 ]
$T -Y '_ws.malformed || _ws.expert.severity >= error' -T fields -e frame.protocols -e udp.length \
  -e udp.port -e tcp.port -e tcp.len 2>/dev/null >"$ND_TMP/mal"
hdr=$(awk -F'\t' '{n = split($1, a, ":"); p = a[n]} p=="eth"||p=="ethertype"||p=="ip"||p=="ipv6"||p=="tcp"||p=="udp"||p=="icmp"||p=="icmpv6"||p=="raw"' "$ND_TMP/mal" | wc -l)
nd_unfit_length <"$ND_TMP/mal" >"$ND_TMP/mal_app"
all=$(wc -l <"$ND_TMP/mal"); app=$(wc -l <"$ND_TMP/mal_app")
echo "  malformed or expert error: $all packets; $hdr in headers, $((all - app)) of lengths their protocol cannot hold, $((app - hdr)) other:"
awk -F'\t' '{n = split($1, a, ":"); print "    " a[n] " (ports " $3 $4 ")"}' "$ND_TMP/mal" | sort | uniq -c | sort -rn | head -8
check "tshark: zero malformed headers ($hdr)" [ "$hdr" -eq 0 ]
if [ "${3:-}" = random-ports ]; then
  echo "  (random ports: $((app - hdr)) packets in dissectors of ports repair does not shape, listed only)"
else
  check "tshark: zero malformed in any dissector but lengths no message has ($((app - hdr)))" [ "$app" -eq 0 ]
fi

if /usr/bin/python3 -c 'import scapy' 2>/dev/null; then
  /usr/bin/python3 - "$P" "$npk" <<'PY' && ok "scapy parses every packet into the expected layers" || fail "scapy layers"
import sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import rdpcap, Ether, IP, IPv6, TCP, UDP, ICMP
from scapy.layers.inet6 import _ICMPv6
pk = rdpcap(sys.argv[1]); bad = 0
for i, p in enumerate(pk):
    ok = Ether in p and ((IP in p) != (IPv6 in p))
    if IP in p:
        ok = ok and p[IP].proto in (1, 6, 17) and p[IP].len == len(p) - 14
        ok = ok and (TCP in p or UDP in p or ICMP in p)
    if IPv6 in p:
        ok = ok and p[IPv6].nh in (6, 17, 58) and p[IPv6].plen == len(p) - 54
        ok = ok and (TCP in p or UDP in p or p[IPv6].nh == 58)
    if not ok:
        bad += 1
        if bad < 5: print("    scapy: packet", i + 1, p.summary())
print("    scapy: %d packets, %d unexpected" % (len(pk), bad))
sys.exit(0 if bad == 0 and len(pk) == int(sys.argv[2]) else 1)
PY
else
  skip "scapy not installed"
fi

if [ "$(id -u)" -eq 0 ] && command -v tcpreplay >/dev/null && ip netns add "ndrep$$" 2>/dev/null; then
  tcprewrite --pnat=10.0.0.0/8:127.0.0.0/8,198.18.0.0/15:127.2.0.0/15 -i "$P" -o "$ND_TMP/lo.pcap" 2>"$ND_TMP/rw.err"
  check "tcprewrite into 127.0.0.0/8" [ -s "$ND_TMP/lo.pcap" ]
  ip netns exec "ndrep$$" ip link set lo up
  ip netns exec "ndrep$$" tcpreplay -i lo -t "$ND_TMP/lo.pcap" >"$ND_TMP/rp" 2>&1
  ip netns del "ndrep$$"
  sent=$(sed -n 's/.*Successful packets: *\([0-9]*\).*/\1/p' "$ND_TMP/rp")
  failed=$(sed -n 's/.*Failed packets: *\([0-9]*\).*/\1/p' "$ND_TMP/rp")
  echo "  tcpreplay: sent ${sent:-?}, failed ${failed:-?}"
  check "tcpreplay: every packet sent" [ "${sent:-0}" -eq "$npk" ]
  check "tcpreplay: none failed" [ "${failed:-1}" -eq 0 ]
else
  skip "tcpreplay in a network namespace (needs root and iproute2)"
fi
}
