#!/bin/sh
# Codec throughput: pcap -> nPrint CSV and pcap -> per-flow images, on the real
# test captures made into one larger capture, beside nprint when it is on PATH
# (or NPRINT=/path/to/nprint): same input, same run. Peak memory of each.
set -eu
ND=${NETDIFF:-build/netdiff}
T=${ND_TESTDATA:-../shared/testdata}
COPIES=${COPIES:-40}
NPRINT=${NPRINT:-$(command -v nprint || true)}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# Outputs (CSV and images) go to a fresh directory under ND_BENCH_OUT
# (default: the temporary directory). On ext4 without a journal, creating
# a file first scans every inode of its block group freed in the last 30 s
# (the kernel's recently_deleted()): where other programs (or this bench's
# last run) have just deleted thousands of files, 1460 files took from 0.1
# to over 2 s, in /tmp and in build/ alike, whatever wrote them. The
# "split" row shows what creating the same files costs in the same place
# at about the same time; the tmpfs rows leave the disk out.
od=$(mktemp -d -p "${ND_BENCH_OUT:-$tmp}" bench-codec.XXXXXX)
trap 'rm -rf "$tmp" "$od"' EXIT
# one capture: every Ethernet test capture nprint parses, COPIES times, each
# copy shifted by 10000 s so its flows are new flows
src="$T/protocols/tls/nprint_example_port443.pcap $T/protocols/http/nprint_example_port80.pcap $T/apps/netflix/ndpi_netflix__netflix.pcap $T/apps/zoom/ndpi_zoom__zoom.pcapng $T/protocols/ssh/zeek_ssh_ssh-client-side-half-duplex.pcap"
mergecap -F pcap -w "$tmp/base.pcap" $src
i=0; list=""
while [ $i -lt "$COPIES" ]; do
  editcap -t $((i * 10000)) "$tmp/base.pcap" "$tmp/c$i.pcap"; list="$list $tmp/c$i.pcap"; i=$((i + 1))
done
mergecap -a -F pcap -w "$tmp/big.pcap" $list
rm -f $list
pk=$(capinfos -Mc "$tmp/big.pcap" | awk '/Number of packets/ {print $NF}')
mb=$(($(stat -c %s "$tmp/big.pcap") / 1048576))
# run CMD...: best wall time of 3 (date's nanoseconds: /usr/bin/time's
# hundredths are too coarse for runs of a tenth of a second), peak RSS, and
# the user + system CPU seconds of the best run
run() {
  best=""; rss=0; cpu=""
  for k in 1 2 3; do
    t0=$(date +%s%N)
    /usr/bin/time -f "%M %U %S" -o "$tmp/t" "$@" >/dev/null 2>&1 || true
    t=$(echo "($(date +%s%N) - $t0) / 1000000000" | bc -l)
    m=$(cut -d' ' -f1 "$tmp/t")
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then
      best=$t; cpu=$(awk '{print $2 + $3}' "$tmp/t")
    fi
    [ "$m" -gt "$rss" ] && rss=$m
  done
  echo "$best $rss $cpu"
}
# row NAME: the line of the last run (set -- $(run ...))
row() {
  printf '%-36s %7.3f %10.0f %7.2f %10.0f %8.1f\n' "$1" "$2" "$(echo "$pk / $2" | bc -l)" "$4" \
    "$(echo "$pk / ($4 + 0.005)" | bc -l)" "$(echo "$3/1024" | bc -l)"
}
flags="-4 -6 -t -u -i -p 0"
echo "input: $pk packets ($mb MiB), $COPIES copies of 5 real captures; outputs on $(stat -f -c %T "$od") ($od)"
echo "CSV: one thread. images: encoding on one thread, files written on a second (bounded queue);"
echo "wall = elapsed seconds (best of 3), CPU = user + system seconds of that run (1/100 s"
echo "resolution: CPU pkt/s divides by CPU + 0.005 s)"
printf '%-36s %7s %10s %7s %10s %8s\n' "task" "wall s" "pkt/s" "CPU s" "pkt/CPU-s" "peak MiB"
set -- $(run $ND encode "$tmp/big.pcap" $flags -o "$od/a.csv")
nd_csv=$1 csv_cpu=$3
row "netdiff encode CSV ($flags)" "$@"
# Image runs write into a new directory each time and nothing is deleted
# until the end (deleting thousands would slow the next run's creations,
# as above).
set -- $(run sh -c "exec $ND encode $tmp/big.pcap --images \$(mktemp -d -p $od)")
nd_img=$1 img_cpu=$3
first=$(ls -d "$od"/tmp.* | head -1)
nimg=$(ls "$first" | wc -l)
row "netdiff encode --images ($nimg PNG)" "$@"
set -- $(run sh -c "exec $ND encode $tmp/big.pcap --images \$(mktemp -d -p $od) --packets 128")
row "netdiff encode --images K=128" "$@"
# The file system's share: the same number of files with the same bytes,
# made by split(1) with no encoding at all; and the images written to a
# tmpfs (no disk, no inode scans), when there is one.
cat "$first"/*.png > "$tmp/all.png"
set -- $(run sh -c "d=\$(mktemp -d -p $od) && exec split -n $nimg $tmp/all.png \$d/x")
row "split: $nimg files, same bytes" "$@"
shm=${ND_BENCH_TMPFS:-/dev/shm}
if [ -d "$shm" ] && [ -w "$shm" ] && stat -f -c %T "$shm" | grep -q tmpfs; then
  shm_tmp=$(mktemp -d -p "$shm"); trap 'rm -rf "$tmp" "$od" "$shm_tmp"' EXIT
  set -- $(run sh -c "exec $ND encode $tmp/big.pcap --images \$(mktemp -d -p $shm_tmp)")
  row "netdiff encode --images, tmpfs" "$@"
  nd_img_shm=$1
  set -- $(run $ND encode "$tmp/big.pcap" $flags -o "$shm_tmp/a.csv")
  row "netdiff encode CSV, tmpfs" "$@"
  nd_csv_shm=$1
  rm -f "$shm_tmp/a.csv"
fi
printf 'images vs CSV: %.2fx the packets/s by wall time, %.2fx by CPU time' \
  "$(echo "$nd_csv / $nd_img" | bc -l)" "$(echo "($csv_cpu + 0.005) / ($img_cpu + 0.005)" | bc -l)"
[ -n "${nd_img_shm:-}" ] && printf '; both to tmpfs: %.2fx by wall time' "$(echo "$nd_csv_shm / $nd_img_shm" | bc -l)"
echo
if [ -n "$NPRINT" ]; then
  set -- $(run "$NPRINT" -P "$tmp/big.pcap" $flags -W "$tmp/b.csv")
  row "nprint 1.2.1 -P ($flags)" "$@"
  if cmp -s "$od/a.csv" "$tmp/b.csv"; then same="identical output"; else same="OUTPUT DIFFERS"; fi
  printf 'CSV speed-up over nprint: %.1fx (%s)\n' "$(echo "$1 / $nd_csv" | bc -l)" "$same"
  printf 'image speed-up over nprint CSV: %.1fx' "$(echo "$1 / $nd_img" | bc -l)"
  [ -n "${nd_img_shm:-}" ] && printf ' (%.1fx to tmpfs)' "$(echo "$1 / $nd_img_shm" | bc -l)"
  echo
else
  echo "nprint: not found on PATH (set NPRINT=/path/to/nprint for the comparison)"
fi
