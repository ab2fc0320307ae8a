#!/bin/sh
# netdiff inspect on every fixture format, and its refusals.
. tests/lib.sh
F=tests/fixtures/weights
out() { $NETDIFF inspect "$@" 2>&1; }
o=$(out $F/tiny_diffusers)
check "diffusers folder" sh -c 'echo "$0" | grep -q "^format: diffusers folder" && echo "$0" | grep -q "^unet: 208 tensors, 803204 parameters, dtypes F16 x208; missing 0, unexpected 0"' "$o"
o=$(out $F/tiny_ldm.safetensors)
check "LDM file" sh -c 'echo "$0" | grep -q "^format: LDM single file" && echo "$0" | grep -q "inferred from shapes" && echo "$0" | grep -q "^skipped: 2"' "$o"
o=$(out $F/tiny_controlnet_ldm.safetensors)
check "ControlNet original" sh -c 'echo "$0" | grep -q "^controlnet: 128 tensors.*BF16 x128; missing 0, unexpected 0"' "$o"
o=$(out --all $F/lora_kohya.safetensors)
check "kohya LoRA" sh -c 'echo "$0" | grep -q "^modules: 61 (unet 49, text encoder 12, conv/LoCon 1)" && echo "$0" | grep -q "lora_unet_down_blocks_0_attentions_0_proj_in  rank 4 alpha 3"' "$o"
o=$(out --all $F/lora_peft.safetensors)
check "PEFT LoRA" sh -c 'echo "$0" | grep -q "unet.down_blocks.0.attentions.0.proj_out  rank 4 alpha 2$" && echo "$0" | grep -q "unet.down_blocks.0.attentions.0.proj_in  rank 4 alpha 8$"' "$o"
printf '\200\002}q\000.' > "$ND_TMP/model.ckpt"
o=$(out "$ND_TMP/model.ckpt"); rc=$?
check "pickle refused with a conversion hint" sh -c '[ "$1" -eq 1 ] && echo "$0" | grep -q "save_file"' "$o" "$rc"
printf 'garbage' > "$ND_TMP/x.safetensors"
$NETDIFF inspect "$ND_TMP/x.safetensors" >/dev/null 2>&1; rc=$?
check "garbage file is an error" [ "$rc" -eq 1 ]
$NETDIFF inspect >/dev/null 2>&1; rc=$?
check "no path is a usage error" [ "$rc" -eq 2 ]
nd_done
