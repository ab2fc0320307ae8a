#!/bin/sh
# Bad input to netdiff: exit code 2 for usage, 1 for runtime errors, a one-line
# message that names the file, no partial output file, and the rest of a
# batch still processed.
. tests/lib.sh
T=$ND_TESTDATA
# expect CODE NAME CMD...: exit code CODE and exactly one line on stderr
expect() {
  code=$1; name=$2; shift 2
  "$@" >"$ND_TMP/out" 2>"$ND_TMP/err"; rc=$?
  lines=$(wc -l <"$ND_TMP/err")
  if [ "$rc" -eq "$code" ] && [ "$lines" -ge 1 ]; then ok "$name (exit $rc: $(head -1 "$ND_TMP/err" | cut -c1-100))"
  else fail "$name: exit $rc (wanted $code), stderr: $(head -3 "$ND_TMP/err")"; fi
}
expect 2 "no command" $NETDIFF
expect 2 "unknown command" $NETDIFF frobnicate
expect 2 "encode without input" $NETDIFF encode
expect 2 "encode bad -p" $NETDIFF encode -p x "$T/protocols/ntp/tcpdump_ntp.pcap"
expect 2 "encode unknown flag" $NETDIFF encode --bogus "$T/protocols/ntp/tcpdump_ntp.pcap"
expect 2 "decode without -o" $NETDIFF decode "$T/nprint/netdiffusion_netflix_01.nprint.gz"
for c in encode decode; do
  if $NETDIFF $c --help >/dev/null 2>&1; then ok "$c --help exits 0"; else fail "$c --help"; fi
done

# a file that is no capture
printf 'hello, I am not a pcap\n' >"$ND_TMP/junk.pcap"
expect 1 "encode a text file" $NETDIFF encode "$ND_TMP/junk.pcap" -o "$ND_TMP/x.csv"
grep -q "junk.pcap" "$ND_TMP/err" && ok "message names the file" || fail "message names the file"
[ ! -e "$ND_TMP/x.csv" ] && ok "no partial CSV left behind" || fail "partial CSV left behind"
# a truncated capture: rows before the damage, exit 1
head -c 30000 "$T/apps/netflix/ndpi_netflix__netflix.pcap" >"$ND_TMP/cut.pcap"
expect 1 "encode a truncated capture" $NETDIFF encode "$ND_TMP/cut.pcap" -o "$ND_TMP/cut.csv"
rows=$(($(wc -l <"$ND_TMP/cut.csv") - 1))
[ "$rows" -gt 10 ] && ok "truncated capture: $rows rows kept" || fail "truncated capture: $rows rows"
expect 1 "unwritable output" $NETDIFF encode "$T/protocols/ntp/tcpdump_ntp.pcap" -o /nonexistent/dir/x.csv
expect 1 "missing input" $NETDIFF encode "$ND_TMP/nope.pcap"

# a directory of mixed files: the good ones are still processed
mkdir -p "$ND_TMP/mixed"
cp "$T/protocols/ntp/tcpdump_ntp.pcap" "$T/protocols/ssh/tcpdump_ssh.pcap" "$ND_TMP/mixed/"
cp "$ND_TMP/junk.pcap" "$ND_TMP/mixed/readme.txt"
expect 1 "encode --images on a mixed directory" $NETDIFF encode "$ND_TMP/mixed" --images "$ND_TMP/img"
n=$(ls "$ND_TMP/img" | wc -l)
[ "$n" -ge 5 ] && ok "good captures still encoded ($n images)" || fail "only $n images"
grep -q "readme.txt" "$ND_TMP/err" && ok "bad file named" || fail "bad file not named"

# several captures of one label into one folder: every flow keeps its image
$NETDIFF encode "$T/apps/whatsapp" --images "$ND_TMP/wa" 2>/dev/null
n=$(ls "$ND_TMP/wa" | wc -l)
[ "$n" -eq 112 ] && ok "4 whatsapp captures -> 112 images, none overwritten" || fail "whatsapp: $n images, 112 flows"

# decode: wrong image width, CSV with unknown columns, mixed directory
mkdir -p "$ND_TMP/dec"
cp "$ND_TMP/img/"*.png "$ND_TMP/dec/"
$NETDIFF encode "$T/protocols/ntp/tcpdump_ntp.pcap" --images "$ND_TMP/wide" --timing-cols 4 2>/dev/null
cp "$ND_TMP/wide/"tcpdump_ntp_000000.png "$ND_TMP/dec/zz_wide.png"
printf 'src_ip,ipv4_ver_0,what_0\n1.2.3.4,0,1\n' >"$ND_TMP/dec/zz_bad.csv"
expect 1 "decode a mixed directory" $NETDIFF decode --no-repair "$ND_TMP/dec" -o "$ND_TMP/dec.pcap"
grep -q "zz_wide.png: image is 1092 pixels wide" "$ND_TMP/err" && ok "wrong width named" || fail "wrong width: $(cat "$ND_TMP/err")"
grep -q "zz_bad.csv:1: unknown column 'what_0'" "$ND_TMP/err" && ok "unknown column named" || fail "unknown column: $(cat "$ND_TMP/err")"
n=$(capinfos -Mc "$ND_TMP/dec.pcap" 2>/dev/null | awk "/Number of packets/ {print \$NF}"); [ "${n:-0}" -gt 0 ] && ok "the good flows were decoded ($n packets)" || fail "no output: $(ls -la "$ND_TMP"/dec.pcap* 2>&1)"
expect 1 "decode nothing decodable" $NETDIFF decode "$ND_TMP/dec/zz_bad.csv" -o "$ND_TMP/none.pcap"
[ ! -e "$ND_TMP/none.pcap" ] && ok "no empty capture left behind" || fail "empty capture left behind"

# class tables: build from labelled captures, list, and bad input
expect 2 "classes build without -o" $NETDIFF classes build "$T/protocols/ssh"
expect 1 "classes with a missing table" $NETDIFF classes --classes "$ND_TMP/none.json"
grep -q "none.json" "$ND_TMP/err" && ok "missing table named" || fail "missing table not named"
$NETDIFF classes build "$T/protocols/ssh" "$T/protocols/ftp" --labels "$T/flows.csv" --packets 32 \
    --templates 1 -o "$ND_TMP/ct/classes.json" 2>"$ND_TMP/err"
first=$($NETDIFF classes --classes "$ND_TMP/ct/classes.json" | cut -f1 | tr '\n' ' ')
[ "$first" = "ftp ssh " ] && ok "classes lists names first ($first)" || fail "classes list: '$first' $(cat "$ND_TMP/err")"
expect 2 "classes build --min-template-packets 0" $NETDIFF classes build "$T/protocols/ssh" \
    --min-template-packets 0 -o "$ND_TMP/ct/x.json"
# a template needs that many packets: none of these flows has 65536
$NETDIFF classes build "$T/protocols/ssh" "$T/protocols/ftp" --labels "$T/flows.csv" --packets 32 \
    --templates 1 --min-template-packets 65536 -o "$ND_TMP/ct2/classes.json" 2>"$ND_TMP/err"
e1=$(grep -c '"templates": \[\]' "$ND_TMP/ct/classes.json"); e2=$(grep -c '"templates": \[\]' "$ND_TMP/ct2/classes.json")
[ "$e1" = 0 ] && [ "$e2" = 2 ] && ok "--min-template-packets: no template under it ($e1 / $e2 classes without)" ||
    fail "--min-template-packets: $e1 / $e2 classes without templates $(cat "$ND_TMP/err")"
printf '{"format":"netdiffd-classes/1","layout":{"packets":16}}' >"$ND_TMP/bad.json"
expect 1 "classes with a bad table" $NETDIFF classes --classes "$ND_TMP/bad.json"
grep -q "bad.json: layout" "$ND_TMP/err" && ok "bad table: file and key named" || fail "bad table: $(cat "$ND_TMP/err")"
nd_done
