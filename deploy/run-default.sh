#!/bin/sh
# The main job on the embedded default model, as the README's first command
# runs it: a few labelled flows of two classes, generated on the CPU,
# repaired into valid packets, written as pcapng with their labels; then
# where the capture is and what capinfos says of it.
set -eu
ND=${NETDIFF:-build/netdiff}
out=${OUT:-build/run-default}
rm -rf "$out"; mkdir -p "$out"
$ND classes | head -5 | sed 's/^/class: /'
$ND generate --class netflix=4,dns=4 --steps 10 --batch 4 --seed 1 --format pcapng \
    -o "$out/default.pcapng"
echo "capture:  $out/default.pcapng"
echo "manifest: $out/default.pcapng.json"
capinfos "$out/default.pcapng" 2>/dev/null | sed -n '1,12p'
