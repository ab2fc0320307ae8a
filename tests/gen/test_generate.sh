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

# determinism: same seed and options -> same bytes, whatever --batch (1, 3, 8:
# full and partial batches that mix two classes) and --threads (1, 2);
# tests/gen/test_model_determinism.c checks the same on the drawn floats
first=$(echo "$classes" | head -1); second=$(echo "$classes" | sed -n 2p)
spec="$first=5,$second=4"
$ND generate --class "$spec" --steps 3 --seed 11 --batch 1 --threads 1 -o "$ND_TMP/d_1_1.pcap" 2>/dev/null
for b in 1 3 8; do
  for t in 1 2; do
    [ "$b$t" = 11 ] && continue
    $ND generate --class "$spec" --steps 3 --seed 11 --batch $b --threads $t -o "$ND_TMP/d_${b}_$t.pcap" 2>/dev/null
    cmp -s "$ND_TMP/d_1_1.pcap" "$ND_TMP/d_${b}_$t.pcap" && ok "same seed, same bytes at --batch $b --threads $t" ||
      fail "--batch $b --threads $t changes the bytes"
  done
done
# --threads 2 draws with two copies of the (small) default model; one copy
# on two threads splits every op instead; 3 and 4 copies share uneven draws
for ck in "1 2 1" "1 2 3" "3 3 2" "4 1 1"; do
  set -- $ck
  $ND generate --class "$spec" --steps 3 --seed 11 --copies $1 --threads $2 --batch $3 \
    -o "$ND_TMP/c_$1_$2_$3.pcap" 2>/dev/null
  cmp -s "$ND_TMP/d_1_1.pcap" "$ND_TMP/c_$1_$2_$3.pcap" &&
    ok "same bytes with --copies $1 --threads $2 --batch $3" ||
    fail "--copies $1 --threads $2 --batch $3 changes the bytes"
done
$ND generate --class "$spec" --steps 3 --seed 12 --batch 3 -o "$ND_TMP/d3.pcap" 2>/dev/null
cmp -s "$ND_TMP/d_1_1.pcap" "$ND_TMP/d3.pcap" && fail "another seed gives the same bytes" || ok "another seed, other bytes"

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
expect 2 "--copies 0" $ND generate --class "$first" --copies 0 -o "$ND_TMP/u.pcap"
expect 2 "n too large" $ND generate --class "$first" -n 99999999 -o "$ND_TMP/u.pcap"
for s in 0 1.5 -0.5 x ""; do
  expect 2 "--strength '$s'" $ND generate --class "$first" --strength "$s" -o "$ND_TMP/u.pcap"
done
expect 1 "missing model" $ND generate --class "$first" --model "$ND_TMP/none.safetensors" -o "$ND_TMP/u.pcap"
head -c 5000 weights/default/netdiff_default.safetensors >"$ND_TMP/cut.safetensors"
expect 1 "corrupt model" $ND generate --class "$first" --model "$ND_TMP/cut.safetensors" -o "$ND_TMP/u.pcap"
expect 1 "a LoRA that does not fit" $ND generate --class "$first" --lora tests/fixtures/weights/lora_kohya.safetensors -o "$ND_TMP/u.pcap"
expect 1 "unwritable output" $ND generate --class "$first" -n 1 --steps 2 -o /nonexistent/dir/u.pcap
[ ! -e "$ND_TMP/u.pcap" ] && ok "no partial file under the final name" || fail "partial file left"
nd_done
