#!/bin/sh
# Runs the benchmarks (tests/bench/bench_*.c built to build/bench/, and
# tests/bench/bench_*.sh), or only those whose name contains $1.
for b in build/bench/bench_* tests/bench/bench_*.sh; do
  [ -e "$b" ] || continue
  case "$b" in *.d) continue ;; esac  # make dependency files
  name=$(basename "$b" .sh); name=${name#bench_}
  case "$name" in *"${1:-}"*) ;; *) continue ;; esac
  echo "### bench: $name"
  case "$b" in *.sh) sh "$b" ;; *) "$b" ;; esac
  echo
done
