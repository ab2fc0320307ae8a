#!/bin/sh
# tests/bench/bench_generate.sh - `netdiff generate` on the embedded default
# model on the CPU, at batch 1 and 8, beside the same model run by diffusers
# on PyTorch CPU from the exported files (tests/bench/bench_generate_diffusers.py)
# in the same run: flows/s, s/flow, seconds per flow by stage (text encoder,
# UNet + ControlNet steps, VAE decode, snap + repair + write, the rest) and
# peak RSS (/usr/bin/time), then ours / diffusers. Both sides use the
# default sampler settings (DDIM, STEPS steps, cfg 7.5, ControlNet scale 1.0,
# the LoRA merged at 1.0, the canny hint of the class's templates in turn),
# the same class, flow count and thread count, text to image from noise on
# both sides (ours with --strength 1, whatever the class table's default
# img2img strength), and are measured alternately,
# REPEAT times, keeping each side's best run (the machine is shared).
# Generation time only: model loading is left out on both sides (diffusers
# also gets one untimed warm-up call). "CPU s per flow" (all threads of the
# process over the same span) is the steadier figure on a busy machine. ND_PYTHON: a Python with torch and
# diffusers (default /work/venv/bin/python); without one only ours runs.
# BACKEND=cuda (with NETDIFF=build/cuda/netdiff from `make cuda`): the same
# table on the GPU, ours with --backend cuda against diffusers in fp16 on
# the same GPU (the 3x goal is the CPU's; on the GPU the ratio is reported).
STEPS=${STEPS:-20}; N=${N:-8}; THREADS=${THREADS:-2}; REPEAT=${REPEAT:-2}; CLS=${CLS:-netflix}
SEED=${SEED:-1}; BATCHES=${BATCHES:-1 8}; BACKEND=${BACKEND:-cpu}
ND=${NETDIFF:-build/netdiff}
DEVICE=cpu; [ "$BACKEND" = cuda ] && DEVICE=cuda
PY=${ND_PYTHON:-}
[ -z "$PY" ] && [ -x /work/venv/bin/python ] && PY=/work/venv/bin/python
if [ ! -f weights/default/netdiff_default.safetensors ] || [ ! -f conf/classes.json ]; then
  echo "generate: the default model (weights/default/, conf/classes.json) is not here: skipped"; exit 0
fi
T=$(mktemp -d /tmp/ndgenbench.XXXXXX)
trap 'rm -rf "$T"' EXIT
PEER=yes
if [ -z "$PY" ] || ! "$PY" -c 'import torch, diffusers, cv2' 2>/dev/null; then
  PEER=no; echo "diffusers: not installed (set ND_PYTHON to a Python with torch, diffusers, opencv)"
else
  echo "diffusers: $("$PY" -c 'import torch, diffusers; print("diffusers", diffusers.__version__, "torch", torch.__version__)')"
fi
echo "model: weights/default, class $CLS, $N flows, $STEPS steps ddim, cfg 7.5, control 1.0, $THREADS threads, best of $REPEAT, $(nproc) cores, backend $BACKEND (diffusers on $DEVICE$([ $DEVICE = cuda ] && echo ', fp16'))"
echo "netdiff: default --copies (one model copy per thread for a model this small: each copy"
echo "  draws its share of a batch on one core); diffusers: one model, torch intra-op threads"

# one run of ours: "flows seconds text hint steps vae post cpu rss_kib"
ours() {
  /usr/bin/time -f '%M' -o "$T/rss" "$ND" generate --class "$CLS=$N" --steps "$STEPS" --batch "$1" \
    --threads "$THREADS" --seed "$SEED" --backend "$BACKEND" --strength 1 -o "$T/ours_$1.pcap" 2>"$T/err" ||
    { cat "$T/err"; return 1; }
  # "... N flows, P packets in S s (R flows/s; text Xs, hint Hs, UNet Ys, VAE Zs, snap+repair+write Ws; cpu Cs)"
  sed -n 's/.*: \([0-9]*\) flows, [0-9]* packets in \([0-9.]*\) s (.*text \([0-9.]*\)s, hint \([0-9.]*\)s, UNet \([0-9.]*\)s, VAE \([0-9.]*\)s, snap+repair+write \([0-9.]*\)s; cpu \([0-9.]*\)s).*/\1 \2 \3 \4 \5 \6 \7 \8/p' \
    "$T/err" | tr '\n' ' ' >"$T/line"
  echo "$(cat "$T/line")$(tail -1 "$T/rss")"
}
# one run of diffusers, the same fields (its hint encoder runs inside the
# ControlNet's forward, every step: "steps"; no snap/repair: "post" 0)
peer() {
  /usr/bin/time -f '%M' -o "$T/rss" "$PY" tests/bench/bench_generate_diffusers.py --class "$CLS" -n "$N" \
    --batch "$1" --steps "$STEPS" --cfg 7.5 --control-scale 1.0 --threads "$THREADS" --seed "$SEED" \
    --device "$DEVICE" >"$T/out" 2>"$T/err" || { tail -5 "$T/err"; return 1; }
  "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["flows"], d["seconds"], d["text"], 0, d["steps"], d["vae"], 0, d["cpu"], end=" ")' "$T/out"
  tail -1 "$T/rss"
}
# keep the faster of the run in $2 and the best so far in file $1
keep() { if [ ! -s "$1" ] || awk -v a="$2" '{split(a, f, " "); exit !(f[2] < $2)}' "$1"; then echo "$2" >"$1"; fi; }

r=0
while [ $r -lt "$REPEAT" ]; do
  for b in $BATCHES; do
    o=$(ours "$b") || exit 1
    keep "$T/best_ours_$b" "$o"
    if [ $PEER = yes ]; then p=$(peer "$b") || exit 1; keep "$T/best_peer_$b" "$p"; fi
  done
  r=$((r + 1))
done

row() { # name batch "flows seconds text hint steps vae post cpu rss"
  echo "$3" | awk -v n="$1" -v b="$2" '{f=$1; s=$2; printf "%-10s %5d %8.3f %7.3f %8.4f %7.4f %7.3f %7.3f %7.4f %7.4f %8.3f %8.0f\n",
    n, b, f / s, s / f, $3 / f, $4 / f, $5 / f, $6 / f, $7 / f, (s - $3 - $4 - $5 - $6 - $7) / f, $8 / f, $9 / 1024}'
}
echo
echo "                             seconds per flow by stage:                        CPU s"
echo "           batch  flows/s  s/flow     text    hint   steps     vae    post    rest  per flow  RSS MiB"
for b in $BATCHES; do
  row netdiff "$b" "$(cat "$T/best_ours_$b")"
  [ $PEER = yes ] && row diffusers "$b" "$(cat "$T/best_peer_$b")"
done
if [ $PEER = yes ]; then
  echo
  [ "$BACKEND" = cpu ] && echo "ours / diffusers (flows/s; goal >= 3):" || echo "ours / diffusers (flows/s):"
  for b in $BATCHES; do
    paste -d' ' "$T/best_ours_$b" "$T/best_peer_$b" | awk -v b="$b" '{x = ($1 / $2) / ($10 / $11);
      printf "  batch %d: %.2fx flows/s (%s), steps+hint %.2fx, vae %.2fx, CPU s per flow %.2fx, RSS %.2fx\n",
      b, x, (x >= 3 ? "ok" : "below the CPU goal"), ($14 / $10) / (($4 + $5) / $1), ($15 / $10) / ($6 / $1),
      ($17 / $10) / ($8 / $1), $9 / $18}'
  done
fi
set -- $BATCHES
if [ $# -gt 1 ]; then
  if cmp -s "$T/ours_$1.pcap" "$T/ours_$2.pcap"; then echo "netdiff: batch $1 and $2 captures identical"
  else echo "netdiff: batch $1 and $2 captures DIFFER"; fi
fi
