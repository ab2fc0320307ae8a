#!/bin/sh
# netdiff generate with --backend emu: the whole generator (text encoder,
# UNet + ControlNet with CFG, VAE) running on the CUDA sources through the SIMT
# emulation, on the embedded default model. The output must be a valid,
# labelled capture; the numbers themselves are checked against the CPU
# reference op by op (tests/kernels/test_ops.c) and component by component
# (tests/model/, also on emu). emu is a device backend as cuda is: f16
# weights uploaded once, activations and embeddings in its (recorded) device
# memory, any host pointer given to a kernel refused, so this run is the
# check that `--backend cuda` hands the GPU nothing it cannot read. Uses
# `make emu`'s release build: the kernels emulated under ASan would take too
# long on the full default model.
. tests/lib.sh
. tests/tools.sh
EMU="env ND_HOME=$PWD ${NETDIFF_EMU:-build/emu/netdiff}"  # its default model is two folders up
ND=${NETDIFF_REL:-build/netdiff}
if [ ! -f weights/default/netdiff_default.safetensors ] || [ ! -f conf/classes.json ]; then
  skip "no default model in weights/default/ yet"; nd_done; exit 0
fi
c=$($ND classes | cut -f1 | head -1)
if $EMU generate --backend emu --class "$c" -n 1 --steps 2 --seed 5 --format pcapng \
    -o "$ND_TMP/emu.pcapng" 2>"$ND_TMP/err"; then
  ok "generate --backend emu ($c, 1 flow, 2 steps)"
else
  fail "generate --backend emu: $(tail -1 "$ND_TMP/err")"; nd_done; exit 1
fi
npk=$(capinfos -Mc "$ND_TMP/emu.pcapng" | awk '/Number of packets/ {print $NF}')
labels=$(tshark -r "$ND_TMP/emu.pcapng" -T fields -e frame.comment 2>/dev/null | cut -d, -f2 | sort -u | tr '\n' ' ')
[ "$labels" = "$c " ] && ok "emu: every packet labelled $c" || fail "emu: labels '$labels'"
nd_check_capture "$ND_TMP/emu.pcapng" "$npk"
# beside the cpu backend (f32 weights there): the same flows up to rounding,
# which the colour snap absorbs almost everywhere (said, not required)
$ND generate --class "$c" -n 1 --steps 2 --seed 5 --format pcapng -o "$ND_TMP/cpu.pcapng" 2>/dev/null
if cmp -s "$ND_TMP/emu.pcapng" "$ND_TMP/cpu.pcapng"; then echo "  emu and cpu captures: identical"
else echo "  emu and cpu captures differ in $(cmp -l "$ND_TMP/emu.pcapng" "$ND_TMP/cpu.pcapng" 2>/dev/null | wc -l) bytes"; fi
# a backend that is not linked in is a clear error
if $ND generate --backend cuda --class "$c" -n 1 -o "$ND_TMP/x.pcap" 2>"$ND_TMP/err"; then
  fail "--backend cuda without the cuda build succeeded"
else
  ok "--backend cuda in a build without it: $(head -1 "$ND_TMP/err")"
fi
[ ! -e "$ND_TMP/x.pcap" ] && ok "no partial file" || fail "partial file left"
nd_done
