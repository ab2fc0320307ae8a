# tests/lib.sh - helpers for shell tests (sourced). Each shell test ends with
# `nd_done`, which prints "N passed, M failed" for tests/run.sh to add up.
ND_PASS=0
ND_FAIL=0
: "${ND_TESTDATA:=../shared/testdata}"
: "${NETDIFF:=build/asan/netdiff}"
ND_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ndtest.XXXXXX")
trap 'rm -rf "$ND_TMP"' EXIT
ok()   { ND_PASS=$((ND_PASS + 1)); echo "ok   $*"; }
fail() { ND_FAIL=$((ND_FAIL + 1)); echo "FAIL $*"; }
# check NAME CMD...: runs CMD; passes when it exits 0.
check() { name=$1; shift; if "$@"; then ok "$name"; else fail "$name"; fi; }
skip() { echo "skip $* (counted as neither)"; }
nd_done() { echo "$ND_PASS passed, $ND_FAIL failed"; [ "$ND_FAIL" -eq 0 ]; }
