#!/bin/sh
# The main job on the embedded default, as the README's first command runs it.
# Until the generator lands, it runs the codec end to end on the bundled real
# capture: pcap -> nPrint CSV -> per-flow images -> pcap, and says what
# capinfos sees in the result.
set -eu
ND=${NETDIFF:-build/netdiff}
out=${OUT:-build/run-default}
rm -rf "$out"; mkdir -p "$out"
in=deploy/sample/tcpdump_ssh.pcap
$ND encode "$in" -o "$out/sample.csv"
$ND encode "$in" --images "$out/images" --packets 128
$ND decode "$out/images" -o "$out/roundtrip.pcap"
echo "nPrint CSV:  $out/sample.csv ($(($(wc -l <"$out/sample.csv") - 1)) packets)"
echo "images:      $out/images/ ($(ls "$out/images" | wc -l) flows)"
echo "capture:     $out/roundtrip.pcap"
capinfos "$out/roundtrip.pcap" 2>/dev/null | sed -n '1,8p'
