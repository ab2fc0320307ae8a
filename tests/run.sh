#!/bin/sh
# tests/run.sh PROG... - runs test programs (C binaries or shell scripts), each
# ending with "N passed, M failed"; prints every program's output and one total.
# Exits non-zero when any test failed or any program crashed.
total_p=0; total_f=0; crashed=0
for t in "$@"; do
  echo "== $t"
  case "$t" in
    *.sh) out=$(sh "$t" 2>&1); rc=$? ;;
    *)    out=$("$t" 2>&1); rc=$? ;;
  esac
  printf '%s\n' "$out"
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
  p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
  f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
  if [ -z "$line" ] || { [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; }; then
    echo "!! $t exited $rc without a clean summary (crash?)"; crashed=$((crashed + 1))
  fi
  total_p=$((total_p + ${p:-0})); total_f=$((total_f + ${f:-0}))
done
total_f=$((total_f + crashed))
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
