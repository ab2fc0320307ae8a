#!/usr/bin/env python3
"""Writes the weights fixtures under tests/fixtures/weights/ (committed; never
run by make). Tiny random-weight SD1.5-shaped models built with diffusers from
configs (no download), saved in every format netdiffd loads:

  tiny_diffusers/                 diffusers folder (f32), transformers-5 CLIP spelling
  tiny_ldm.safetensors            the same model as one LDM file (f16: weights are
                                  rounded to f16 first, so both hold equal values)
  tiny_controlnet_diffusers/      ControlNetModel folder (f32)
  tiny_controlnet_ldm.safetensors original (lllyasviel) layout, control_model. prefix (bf16
                                  after bf16 rounding)
  lora_kohya.safetensors          kohya layout: lora_unet_*/lora_te_*, alpha, LoCon 3x3 (bf16)
  lora_peft.safetensors           diffusers/PEFT layout, alpha in lora_adapter_metadata (f32)
  merged_kohya.safetensors        expected weights after kohya x 0.8 (diffusers fuse_lora)
  merged_peft.safetensors         expected weights after PEFT x 0.5 (diffusers fuse_lora)
  outputs.safetensors             each component's output on fixed inputs (for model/)
  manifests/*.json                full-size key names + shapes, no values

Usage: /work/venv/bin/python train/make_fixtures.py [--outputs-only] [OUTDIR]
  --outputs-only  rewrite only outputs.safetensors from the committed models
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file, load_file

from diffusers import (AutoencoderKL, ControlNetModel, PNDMScheduler,
                       StableDiffusionPipeline, UNet2DConditionModel)
from diffusers.loaders import single_file_utils as sfu
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

ONLY_OUTPUTS = "--outputs-only" in sys.argv
ARGS = [a for a in sys.argv[1:] if a != "--outputs-only"]
OUT = ARGS[0] if ARGS else os.path.join(
    os.path.dirname(__file__), "..", "tests", "fixtures", "weights")
torch.manual_seed(1234)

# ---- configs -----------------------------------------------------------------
# Tiny, but every structural feature of SD1.5: two levels, cross-attention down
# and up, a plain block, resnets with shortcuts, downsample/upsample. Heads and
# GroupNorm groups are SD1.5's values, which an LDM file cannot state.
TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                 block_out_channels=[32, 64],
                 down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                 up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
                 cross_attention_dim=64, attention_head_dim=8, norm_num_groups=32)
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[32, 32],
                down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                layers_per_block=1, norm_num_groups=32, sample_size=16)
TINY_CLIP = dict(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=1, max_position_embeddings=77, hidden_act="quick_gelu",
                 bos_token_id=0, eos_token_id=2, pad_token_id=1)
TINY_CN = dict(TINY_UNET, conditioning_embedding_out_channels=[8, 8, 16, 16])
del TINY_CN["out_channels"], TINY_CN["up_block_types"]

FULL_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=[320, 640, 1280, 1280],
                 down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                 up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
                 cross_attention_dim=768, attention_head_dim=8)
FULL_VAE = dict(in_channels=3, out_channels=3, latent_channels=4,
                block_out_channels=[128, 256, 512, 512],
                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                layers_per_block=2, sample_size=512)
FULL_CLIP = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
FULL_CN = dict(FULL_UNET)
del FULL_CN["out_channels"], FULL_CN["up_block_types"], FULL_CN["sample_size"]


def randomize(model, scale=0.2, dtype=torch.float16):
    """Random weights (diffusers zero-inits some), rounded to DTYPE's values
    and to f16's too (tiny values flushed), so one tensor is exact in F32, F16
    and BF16 files alike."""
    with torch.no_grad():
        for p in model.parameters():
            v = (torch.randn_like(p) * scale).to(dtype).float()
            v[v.abs() < 1e-4] = 0
            p.copy_(v.half().float())
    return model


# ---- diffusers -> LDM names (reverse of docs/sd15.md 8.3, any depth) ----------
RES = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
       ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]


def unet_common_to_ldm(k, L):
    p = k.split(".")
    if k.startswith("time_embedding.linear_"):
        return "time_embed.%d.%s" % (0 if p[1] == "linear_1" else 2, p[2])
    if k.startswith("conv_in."):
        return "input_blocks.0.0." + p[1]
    if p[0] == "down_blocks":
        i, kind = int(p[1]), p[2]
        if kind == "resnets":
            j = int(p[3])
            rest = ".".join(p[4:])
            for a, b in RES:
                if rest.startswith(a + "."):
                    rest = b + rest[len(a):]
            return "input_blocks.%d.0.%s" % (i * (L + 1) + j + 1, rest)
        if kind == "attentions":
            return "input_blocks.%d.1.%s" % (i * (L + 1) + int(p[3]) + 1, ".".join(p[4:]))
        if kind == "downsamplers":
            return "input_blocks.%d.0.op.%s" % (i * (L + 1) + L + 1, p[-1])
    if p[0] == "mid_block":
        if p[1] == "attentions":
            return "middle_block.1." + ".".join(p[3:])
        rest = ".".join(p[3:])
        for a, b in RES:
            if rest.startswith(a + "."):
                rest = b + rest[len(a):]
        return "middle_block.%d.%s" % (2 * int(p[2]), rest)
    return None


def unet_to_ldm(k, L, up_attn):
    r = unet_common_to_ldm(k, L)
    if r:
        return r
    p = k.split(".")
    if p[0] == "conv_norm_out":
        return "out.0." + p[1]
    if p[0] == "conv_out":
        return "out.2." + p[1]
    if p[0] == "up_blocks":
        i, kind = int(p[1]), p[2]
        if kind == "resnets":
            rest = ".".join(p[4:])
            for a, b in RES:
                if rest.startswith(a + "."):
                    rest = b + rest[len(a):]
            return "output_blocks.%d.0.%s" % (i * (L + 1) + int(p[3]), rest)
        if kind == "attentions":
            return "output_blocks.%d.1.%s" % (i * (L + 1) + int(p[3]), ".".join(p[4:]))
        if kind == "upsamplers":
            return "output_blocks.%d.%d.conv.%s" % (i * (L + 1) + L, 2 if up_attn[i] else 1, p[-1])
    raise KeyError(k)


def controlnet_to_ldm(k, L, n_cond):
    r = unet_common_to_ldm(k, L)
    if r:
        return r
    p = k.split(".")
    if p[0] == "controlnet_cond_embedding":
        if p[1] == "conv_in":
            return "input_hint_block.0." + p[2]
        if p[1] == "conv_out":
            return "input_hint_block.%d.%s" % (2 * (2 * (n_cond - 1) + 1), p[2])
        return "input_hint_block.%d.%s" % (2 * (int(p[2]) + 1), p[3])
    if p[0] == "controlnet_down_blocks":
        return "zero_convs.%s.0.%s" % (p[1], p[2])
    if p[0] == "controlnet_mid_block":
        return "middle_block_out.0." + p[1]
    raise KeyError(k)


def vae_to_ldm(k, n):
    p = k.split(".")
    if p[0] in ("quant_conv", "post_quant_conv"):
        return k
    side, rest = p[0], p[1:]
    r = ".".join(rest)
    if rest[0] in ("conv_in", "conv_out"):
        return k
    if rest[0] == "conv_norm_out":
        return "%s.norm_out.%s" % (side, rest[1])
    def res(s):
        return s.replace("conv_shortcut", "nin_shortcut")
    if rest[0] == "mid_block":
        if rest[1] == "resnets":
            return "%s.mid.block_%d.%s" % (side, int(rest[2]) + 1, res(".".join(rest[3:])))
        m = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
        return "%s.mid.attn_1.%s.%s" % (side, m[rest[3]], rest[-1])
    if rest[0] == "down_blocks":
        i = int(rest[1])
        if rest[2] == "resnets":
            return "encoder.down.%d.block.%s.%s" % (i, rest[3], res(".".join(rest[4:])))
        return "encoder.down.%d.downsample.conv.%s" % (i, rest[-1])
    if rest[0] == "up_blocks":
        i = n - 1 - int(rest[1])
        if rest[2] == "resnets":
            return "decoder.up.%d.block.%s.%s" % (i, rest[3], res(".".join(rest[4:])))
        return "decoder.up.%d.upsample.conv.%s" % (i, rest[-1])
    raise KeyError(k)


def ldm_state(unet, vae, te, ucfg, vcfg):
    L, up_attn = ucfg["layers_per_block"], ["CrossAttn" in t for t in ucfg["up_block_types"]]
    n = len(vcfg["block_out_channels"])
    out = {}
    for k, v in unet.state_dict().items():
        out["model.diffusion_model." + unet_to_ldm(k, L, up_attn)] = v
    for k, v in vae.state_dict().items():
        lk = vae_to_ldm(k, n)
        if ".mid.attn_1." in lk and v.ndim == 2:
            v = v[:, :, None, None]  # LDM keeps the attention as 1x1 convs
        out["first_stage_model." + lk] = v
    for k, v in te.state_dict().items():
        if not k.startswith("text_model."):  # transformers 5 drops the prefix
            k = "text_model." + k
        out["cond_stage_model.transformer." + k] = v
    return out


def check_against_diffusers(ldm, unet, vae, ucfg, vcfg):
    """diffusers' own single-file converter must give our diffusers weights back."""
    u = sfu.convert_ldm_unet_checkpoint(ldm, dict(ucfg))
    ref = unet.state_dict()
    assert set(u) == set(ref), (set(u) ^ set(ref))
    for k in ref:
        assert torch.equal(u[k], ref[k]), k
    v = sfu.convert_ldm_vae_checkpoint(ldm, dict(vcfg))
    ref = vae.state_dict()
    assert set(v) == set(ref), (set(v) ^ set(ref))
    for k in ref:
        assert torch.equal(v[k].reshape(ref[k].shape), ref[k]), k


def tokenizer_files(d):
    """A small but real byte-level BPE vocabulary (CLIP's format)."""
    os.makedirs(d, exist_ok=True)
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    syms = [chr(c) for c in cs]
    vocab = syms + [s + "</w>" for s in syms]
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("c", "a"), ("ca", "t</w>")]
    vocab += [a + b for a, b in merges] + ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(d, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f)
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join("%s %s\n" % m for m in merges))
    return len(vocab)


def manifest(path, tensors, fmt, dtype="F32"):
    with open(path, "w") as f:
        json.dump({"format": fmt, "tensors": {k: {"dtype": dtype, "shape": list(s)}
                                              for k, s in sorted(tensors.items())}},
                  f, indent=0, sort_keys=True)


def kohya_modules(unet, te, conv=True):
    """(kohya name, module path, module) the way sd-scripts picks targets."""
    out = []
    for comp, prefix, model in (("unet", "lora_unet", unet), ("te", "lora_te", te)):
        for name, m in model.named_modules():
            tgt = None
            if comp == "unet" and ".attentions." in name and "transformer_blocks" in name or \
                    comp == "unet" and (name.endswith("proj_in") or name.endswith("proj_out")) \
                    and ".attentions." in name:
                tgt = isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
            elif comp == "unet" and conv and name.endswith(".conv1") and name.startswith("down_blocks.0.") \
                    and ".resnets." in name:
                tgt = isinstance(m, torch.nn.Conv2d)
            elif comp == "te" and (".self_attn." in name or ".mlp." in name):
                tgt = isinstance(m, torch.nn.Linear)
            if tgt:
                path = name if comp == "unet" or name.startswith("text_model.") else "text_model." + name
                out.append((prefix + "_" + path.replace(".", "_"), comp, name, m))
    return out


def kohya_lora(unet, te, rank=4, gen=None):
    sd = {}
    for kname, comp, name, m in kohya_modules(unet, te):
        w = m.weight
        if w.ndim == 4:
            down = torch.randn(rank, w.shape[1], w.shape[2], w.shape[3], generator=gen)
            up = torch.randn(w.shape[0], rank, 1, 1, generator=gen)
        else:
            down = torch.randn(rank, w.shape[1], generator=gen)
            up = torch.randn(w.shape[0], rank, generator=gen)
        sd[kname + ".lora_down.weight"] = (down * 0.1).to(torch.bfloat16)
        sd[kname + ".lora_up.weight"] = (up * 0.1).to(torch.bfloat16)
        sd[kname + ".alpha"] = torch.tensor(2.0 if w.ndim == 2 else 3.0, dtype=torch.bfloat16)
    return sd


def manual_merge(base, lora_sd, modules, scale):
    """W + scale * alpha / r * up @ down for every module (fallback reference)."""
    out = {}
    for kname, comp, name, m in modules:
        d = lora_sd[kname + ".lora_down.weight"].float()
        u = lora_sd[kname + ".lora_up.weight"].float()
        a = lora_sd[kname + ".alpha"].float().item()
        r = d.shape[0]
        delta = (u.reshape(u.shape[0], r) @ d.reshape(r, -1)).reshape(m.weight.shape)
        out[name] = base[name + ".weight"] + scale * a / r * delta
    return out


def canon(comp, name):
    if comp == "te":
        return "text_encoder." + (name if name.startswith("text_model.") else "text_model." + name)
    return "unet." + name


def build_pipe(tok_dir):
    unet = randomize(UNet2DConditionModel(**TINY_UNET)).eval()
    vae = randomize(AutoencoderKL(**TINY_VAE)).eval()
    te = randomize(CLIPTextModel(CLIPTextConfig(**TINY_CLIP))).eval()
    tok = CLIPTokenizer(os.path.join(tok_dir, "vocab.json"), os.path.join(tok_dir, "merges.txt"))
    sched = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          skip_prk_steps=True, steps_offset=1)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=te, tokenizer=tok,
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "manifests"))
    tmp_tok = os.path.join(OUT, "_tok")
    nvocab = tokenizer_files(tmp_tok)
    TINY_CLIP["vocab_size"] = nvocab
    pipe = build_pipe(tmp_tok)
    shutil.rmtree(tmp_tok)
    unet, vae, te = pipe.unet, pipe.vae, pipe.text_encoder
    folder = os.path.join(OUT, "tiny_diffusers")
    # UNet and VAE as f16 (like the fp16 SD1.5 releases), text encoder f32
    unet.half(), vae.half()
    pipe.save_pretrained(folder, safe_serialization=True)
    unet.float(), vae.float()
    tokenizer_files(os.path.join(folder, "tokenizer"))  # SD1.5 repos ship these two as well
    ucfg, vcfg = dict(unet.config), dict(vae.config)

    # LDM single file, f16 (the values are f16-exact, so nothing is lost)
    ldm = ldm_state(unet, vae, te, ucfg, vcfg)
    check_against_diffusers(ldm, unet, vae, ucfg, vcfg)
    ldm16 = {k: v.half().contiguous() for k, v in ldm.items()}
    ldm16["cond_stage_model.transformer.text_model.embeddings.position_ids"] = \
        torch.arange(77, dtype=torch.int64)[None]
    ldm16["model_ema.decay"] = torch.tensor(0.9999)  # skipped and counted
    save_file(ldm16, os.path.join(OUT, "tiny_ldm.safetensors"))

    # ControlNet from the UNet (as diffusers does), both layouts
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    randomize(cn, dtype=torch.bfloat16)
    cn.eval()
    cn.half()
    cn.save_pretrained(os.path.join(OUT, "tiny_controlnet_diffusers"), safe_serialization=True)
    cn.float()
    ccfg = dict(cn.config)
    L = ccfg["layers_per_block"]
    cn_ldm = {"control_model." + controlnet_to_ldm(k, L, len(ccfg["conditioning_embedding_out_channels"])): v
              for k, v in cn.state_dict().items()}
    back = sfu.convert_controlnet_checkpoint(cn_ldm, dict(ccfg))
    ref = cn.state_dict()
    assert set(back) == set(ref), set(back) ^ set(ref)
    for k in ref:
        assert torch.equal(back[k], ref[k]), k
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in cn_ldm.items()},
              os.path.join(OUT, "tiny_controlnet_ldm.safetensors"))

    # kohya LoRA (+ LoCon 3x3 convs), bf16
    gen = torch.Generator().manual_seed(7)
    ksd = kohya_lora(unet, te, gen=gen)
    kpath = os.path.join(OUT, "lora_kohya.safetensors")
    save_file(ksd, kpath, metadata={"ss_network_module": "networks.lora", "ss_network_dim": "4"})
    mods = kohya_modules(unet, te)
    base = {**{("unet", k): v for k, v in unet.state_dict().items()},
            **{("te", k): v for k, v in te.state_dict().items()}}
    expect_k = {}
    for comp, model in (("unet", unet), ("te", te)):
        sub = [m for m in mods if m[1] == comp]
        merged = manual_merge(model.state_dict(), ksd, sub, 0.8)
        for name, v in merged.items():
            expect_k[canon(comp, name + ".weight")] = v.contiguous()
    # cross-check with diffusers' own kohya loader + fuse where it supports it
    p2 = build_pipe_from(folder)
    p2.load_lora_weights(kpath, adapter_name="k")
    p2.fuse_lora(lora_scale=0.8)
    checked = 0
    for comp, model in (("unet", p2.unet), ("te", p2.text_encoder)):
        for k, v in model.state_dict().items():
            c = canon(comp, k.replace("base_layer.", ""))
            if c in expect_k and "lora" not in k:
                assert torch.allclose(v, expect_k[c], atol=1e-5, rtol=1e-4), c
                checked += 1
    print("kohya: %d modules, %d cross-checked against diffusers fuse_lora" % (len(mods), checked))
    save_file(expect_k, os.path.join(OUT, "merged_kohya.safetensors"))

    # PEFT LoRA via diffusers' own save_lora_weights
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    p3 = build_pipe_from(folder)
    ucfg_l = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                        target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out",
                                        "down_blocks.0.resnets.0.conv1"],
                        alpha_pattern={"proj_out": 2})
    tcfg_l = LoraConfig(r=2, lora_alpha=1, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"])
    torch.manual_seed(99)
    p3.unet.add_adapter(ucfg_l)
    p3.text_encoder.add_adapter(tcfg_l)
    ppath_dir = os.path.join(OUT, "_peft")
    StableDiffusionPipeline.save_lora_weights(
        ppath_dir, unet_lora_layers=get_peft_model_state_dict(p3.unet),
        text_encoder_lora_layers=get_peft_model_state_dict(p3.text_encoder),
        unet_lora_adapter_metadata=ucfg_l.to_dict(), text_encoder_lora_adapter_metadata=tcfg_l.to_dict())
    ppath = os.path.join(OUT, "lora_peft.safetensors")
    shutil.move(os.path.join(ppath_dir, "pytorch_lora_weights.safetensors"), ppath)
    shutil.rmtree(ppath_dir)
    p4 = build_pipe_from(folder)
    p4.load_lora_weights(ppath, adapter_name="p")
    p4.fuse_lora(lora_scale=0.5)
    expect_p = {}
    for comp, model, basem in (("unet", p4.unet, unet), ("te", p4.text_encoder, te)):
        bsd = basem.state_dict()
        for k, v in model.state_dict().items():
            if "lora_" in k:
                continue
            k2 = k.replace("base_layer.", "")
            if k2 in bsd and not torch.equal(v, bsd[k2]):
                expect_p[canon(comp, k2)] = v.contiguous()
    print("peft: %d merged tensors" % len(expect_p))
    save_file(expect_p, os.path.join(OUT, "merged_peft.safetensors"))

    write_outputs(te, unet, vae, cn, nvocab)

    # full-size manifests (meta device: shapes only)
    with torch.device("meta"):
        fu = UNet2DConditionModel(**FULL_UNET)
        fv = AutoencoderKL(**FULL_VAE)
        ft = CLIPTextModel(CLIPTextConfig(**FULL_CLIP))
        fc = ControlNetModel(**FULL_CN)
    shapes = {k: tuple(v.shape) for k, v in ldm_state(fu, fv, ft, dict(fu.config), dict(fv.config)).items()}
    manifest(os.path.join(OUT, "manifests", "sd15_ldm.json"), shapes, "ldm")
    L = fc.config.layers_per_block
    manifest(os.path.join(OUT, "manifests", "controlnet_canny_ldm.json"),
             {"control_model." + controlnet_to_ldm(k, L, 4): tuple(v.shape) for k, v in fc.state_dict().items()},
             "controlnet_ldm")
    manifest(os.path.join(OUT, "manifests", "controlnet_canny_diffusers.json"),
             {k: tuple(v.shape) for k, v in fc.state_dict().items()}, "controlnet_diffusers")
    lshapes = {}
    for kname, comp, name, m in kohya_modules(fu, ft, conv=False):
        w = m.weight.shape
        extra = (1, 1) if len(w) == 4 else ()
        lshapes[kname + ".lora_down.weight"] = (32, w[1]) + extra
        lshapes[kname + ".lora_up.weight"] = (w[0], 32) + extra
        lshapes[kname + ".alpha"] = ()
    manifest(os.path.join(OUT, "manifests", "lora_kohya_sd15_r32.json"), lshapes, "lora_kohya", "F16")
    print("kohya SD1.5 modules:", len(lshapes) // 3)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print("fixtures: %.2f MB in %s" % (total / 1e6, OUT))


def write_outputs(te, unet, vae, cn, nvocab):
    """Each component's output on fixed inputs (for model/). The draws from g
    keep their order: new inputs are drawn after the old ones, so the old keys
    keep their values."""
    g = torch.Generator().manual_seed(42)
    with torch.no_grad():
        ids = torch.tensor([[nvocab - 2, 10, 20, 30] + [nvocab - 1] * 73])
        ctx = te(ids).last_hidden_state
        x = torch.randn(1, 4, 8, 8, generator=g)
        t = torch.tensor([500.0])
        eps = unet(x, t, encoder_hidden_states=ctx).sample
        img = vae.decode(x).sample
        hint = torch.rand(1, 3, 64, 64, generator=g)
        down, mid = cn(x, t, encoder_hidden_states=ctx, controlnet_cond=hint, return_dict=False)
        # added for the model components: the UNet fed the ControlNet's residuals
        # (conditioning scale 0.7) and the VAE encoder's moments (mean, logvar)
        down7, mid7 = cn(x, t, encoder_hidden_states=ctx, controlnet_cond=hint,
                         conditioning_scale=0.7, return_dict=False)
        eps_c = unet(x, t, encoder_hidden_states=ctx, down_block_additional_residuals=down7,
                     mid_block_additional_residual=mid7).sample
        image = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
        h = vae.quant_conv(vae.encoder(image))
    outs = {"te.input_ids": ids.to(torch.int32), "te.last_hidden_state": ctx,
            "unet.sample": x, "unet.timestep": t, "unet.out": eps, "vae.latent": x.clone(),
            "vae.decode": img, "controlnet.hint": hint, "controlnet.mid": mid,
            "unet.out_control": eps_c, "vae.image": image, "vae.encode_moments": h}
    for i, d in enumerate(down):
        outs["controlnet.down.%d" % i] = d
    save_file({k: v.contiguous() for k, v in outs.items()}, os.path.join(OUT, "outputs.safetensors"))


def outputs_only():
    """Rewrites only outputs.safetensors from the committed model files (their
    values are f16-exact, so loading them gives the models main() made)."""
    folder = os.path.join(OUT, "tiny_diffusers")
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None,
                                                   requires_safety_checker=False,
                                                   torch_dtype=torch.float32)
    cn = ControlNetModel.from_pretrained(os.path.join(OUT, "tiny_controlnet_diffusers"),
                                         torch_dtype=torch.float32).eval()
    te, unet, vae = pipe.text_encoder.eval(), pipe.unet.eval(), pipe.vae.eval()
    write_outputs(te, unet, vae, cn, te.config.vocab_size)


def build_pipe_from(folder):
    return StableDiffusionPipeline.from_pretrained(folder, safety_checker=None,
                                                   requires_safety_checker=False)


if __name__ == "__main__":
    outputs_only() if ONLY_OUTPUTS else main()
