#!/bin/sh
# Regenerates tests/codec/nprint_expected.txt: the SHA-256 of the CSV that
# nprint writes for each capture in ../shared/testdata and each flag set below.
# Needs an nprint 1.2.1 binary built outside this repository from its public
# source (NPRINT=/path/to/nprint); the repository never builds or ships it.
# Captures listed in nprint_differences.txt (where nprint is wrong on purpose
# of ours, see docs there) are left out.
set -eu
: "${NPRINT:?set NPRINT to an nprint 1.2.1 binary}"
: "${ND_TESTDATA:=../shared/testdata}"
out=tests/codec/nprint_expected.txt
diffs=tests/codec/nprint_differences.txt
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
  echo "# made by tests/codec/make_nprint_expected.sh with $("$NPRINT" --version 2>&1 | head -1)"
  echo "# flags|sha256 of nprint -P FILE FLAGS -W out.csv|capture (relative to testdata)"
  while read -r flags; do
    find "$ND_TESTDATA" \( -name '*.pcap' -o -name '*.pcapng' \) | sort | while read -r f; do
      rel=${f#"$ND_TESTDATA"/}
      if grep -q "^$rel|" "$diffs" && grep "^$rel|" "$diffs" | grep -q -e "|all|" -e "|$flags|"; then
        continue
      fi
      # shellcheck disable=SC2086
      "$NPRINT" -P "$f" $flags -W "$tmp" >/dev/null 2>&1 || continue
      echo "$flags|$(sha256sum <"$tmp" | cut -d' ' -f1)|$rel"
    done
  done <<FLAGS
-4 -6 -t -u -i -p 0
-4 -t -u -p 20 -R
-4 -6 -t -u -i -p 4 -A -O 4
-6 -t -u -i -R -O 2
FLAGS
} >"$out"
echo "$(grep -vc '^#' "$out") expected CSVs written to $out"
