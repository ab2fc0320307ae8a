#!/bin/sh
# netdiff generate end to end on the embedded default model: for every class,
# -n 20 flows that tshark, scapy and tcpreplay accept, labelled as asked, with
# a manifest that agrees with the capture; same seed -> same bytes whatever
# --batch and --threads; bad input -> a clear error and no partial file.
# Uses the release binary: the model's arithmetic under ASan would take too
# long, and the sanitizer runs cover the same code on the tiny fixtures.
. tests/lib.sh
. tests/tools.sh
ND=${NETDIFF_REL:-build/netdiff}
if [ ! -f weights/default/netdiff_default.safetensors ] || [ ! -f conf/classes.json ]; then
  skip "no default model in weights/default/ yet"; nd_done; exit 0
fi
N=${GEN_N:-20}
STEPS=${GEN_STEPS:-4}
classes=$($ND classes | cut -f1)
[ -n "$classes" ] && ok "default model lists $(echo "$classes" | wc -l) classes" || fail "no classes"
for c in $classes; do
  out="$ND_TMP/$c.pcapng"
  if ! $ND generate --class "$c" -n "$N" --steps "$STEPS" --batch 8 --format pcapng --seed 7 -o "$out" 2>"$ND_TMP/err"; then
    fail "$c: generate failed: $(tail -1 "$ND_TMP/err")"; continue
  fi
  npk=$(capinfos -Mc "$out" | awk '/Number of packets/ {print $NF}')
  flows=$(tshark -r "$out" -T fields -e frame.comment 2>/dev/null | cut -d, -f1 | sort -u | wc -l)
  labels=$(tshark -r "$out" -T fields -e frame.comment 2>/dev/null | cut -d, -f2 | sort -u | tr '\n' ' ')
  [ "$labels" = "$c " ] && ok "$c: every packet labelled $c" || fail "$c: labels '$labels'"
  # the manifest: N flows whose packets add up to the capture's
  mp=$(/usr/bin/python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(len(m), sum(f['packets'] for f in m), len({f['class'] for f in m}))" "$out.json")
  [ "$mp" = "$N $npk 1" ] && ok "$c: manifest agrees ($N flows, $npk packets)" || fail "$c: manifest '$mp' vs $N flows, $npk packets"
  [ "$flows" -le "$N" ] || fail "$c: $flows flow ids"
  nd_check_capture "$out" "$npk"
done

# determinism: same seed and options -> same bytes, whatever batch and threads
first=$(echo "$classes" | head -1)
$ND generate --class "$first" -n 6 --steps 4 --seed 11 --batch 1 --threads 1 -o "$ND_TMP/d1.pcap" 2>/dev/null
$ND generate --class "$first" -n 6 --steps 4 --seed 11 --batch 3 --threads 2 -o "$ND_TMP/d2.pcap" 2>/dev/null
$ND generate --class "$first" -n 6 --steps 4 --seed 12 --batch 3 -o "$ND_TMP/d3.pcap" 2>/dev/null
cmp -s "$ND_TMP/d1.pcap" "$ND_TMP/d2.pcap" && ok "same seed, same bytes across --batch/--threads" || fail "batch/threads change the bytes"
cmp -s "$ND_TMP/d1.pcap" "$ND_TMP/d3.pcap" && fail "another seed gives the same bytes" || ok "another seed, other bytes"

# bad input
expect() {
  code=$1; name=$2; shift 2
  "$@" >/dev/null 2>"$ND_TMP/err"; rc=$?
  if [ "$rc" -eq "$code" ] && [ "$(wc -l <"$ND_TMP/err")" -eq 1 ]; then ok "$name (exit $rc: $(cut -c1-90 "$ND_TMP/err"))"
  else fail "$name: exit $rc, $(head -2 "$ND_TMP/err")"; fi
}
expect 2 "unknown class" $ND generate --class nosuchclass -o "$ND_TMP/u.pcap"
grep -q "known: " "$ND_TMP/err" && ok "the error lists the known classes" || fail "known classes not listed"
expect 2 "n = 0" $ND generate --class "$first" -n 0 -o "$ND_TMP/u.pcap"
expect 2 "n too large" $ND generate --class "$first" -n 99999999 -o "$ND_TMP/u.pcap"
expect 1 "missing model" $ND generate --class "$first" --model "$ND_TMP/none.safetensors" -o "$ND_TMP/u.pcap"
head -c 5000 weights/default/netdiff_default.safetensors >"$ND_TMP/cut.safetensors"
expect 1 "corrupt model" $ND generate --class "$first" --model "$ND_TMP/cut.safetensors" -o "$ND_TMP/u.pcap"
expect 1 "a LoRA that does not fit" $ND generate --class "$first" --lora tests/fixtures/weights/lora_kohya.safetensors -o "$ND_TMP/u.pcap"
expect 1 "unwritable output" $ND generate --class "$first" -n 1 --steps 2 -o /nonexistent/dir/u.pcap
[ ! -e "$ND_TMP/u.pcap" ] && ok "no partial file under the final name" || fail "partial file left"
nd_done
