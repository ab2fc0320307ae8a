#!/bin/sh
# netdiff encode writes the same bytes as nprint 1.2.1 (SHA-256 of the CSV,
# from tests/codec/nprint_expected.txt, made by make_nprint_expected.sh with
# nprint 1.2.1 built from its public source) for every real capture and flag
# set listed there; and it reads every capture nprint gets wrong (listed in
# nprint_differences.txt) without crashing.
. tests/lib.sh
n_ok=0; n_bad=0
while IFS='|' read -r flags sum rel; do
  case "$flags" in '#'*|'') continue ;; esac
  # shellcheck disable=SC2086
  got=$($NETDIFF encode "$ND_TESTDATA/$rel" $flags 2>"$ND_TMP/err" | sha256sum | cut -d' ' -f1)
  if [ "$got" = "$sum" ]; then n_ok=$((n_ok + 1)); else
    n_bad=$((n_bad + 1))
    [ "$n_bad" -le 5 ] && echo "   differs: $rel with '$flags' ($(head -c 200 "$ND_TMP/err"))"
  fi
done < tests/codec/nprint_expected.txt
if [ "$n_bad" -eq 0 ] && [ "$n_ok" -gt 700 ]; then ok "nprint-identical CSV for $n_ok capture/flag pairs"
else fail "nprint-identical CSV: $n_bad of $((n_ok + n_bad)) differ"; fi

# Deliberate differences: each capture still encodes (the damaged one: exit 1
# with one line naming the file, and no output file left behind).
cut -d'|' -f1 tests/codec/nprint_differences.txt | grep -v '^#' | sort -u | while read -r rel; do
  [ -n "$rel" ] || continue
  $NETDIFF encode "$ND_TESTDATA/$rel" -o "$ND_TMP/d.csv" 2>"$ND_TMP/err"; rc=$?
  rows=0; [ -f "$ND_TMP/d.csv" ] && rows=$(($(wc -l <"$ND_TMP/d.csv") - 1)); rm -f "$ND_TMP/d.csv"
  case "$rel" in
    *damaged*) [ "$rc" -eq 1 ] && [ "$(wc -l <"$ND_TMP/err")" -eq 1 ] && grep -q "$rel" "$ND_TMP/err" && echo "PASS" || echo "FAIL $rel rc=$rc rows=$rows" ;;
    *) [ "$rc" -eq 0 ] && [ "$rows" -gt 0 ] && echo "PASS" || echo "FAIL $rel rc=$rc rows=$rows" ;;
  esac
done > "$ND_TMP/diffs"
if grep -q FAIL "$ND_TMP/diffs"; then fail "captures nprint gets wrong: $(grep FAIL "$ND_TMP/diffs" | tr '\n' ' ')"
else ok "captures nprint gets wrong encode cleanly ($(grep -c PASS "$ND_TMP/diffs"))"; fi
nd_done
