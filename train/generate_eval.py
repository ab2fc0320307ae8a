#!/usr/bin/env python3
"""Measures the exported default model (weights/default/) through diffusers.

1. loads the exported files with diffusers' own loaders: the LDM single file
   (StableDiffusionControlNetPipeline.from_single_file), the original-layout
   ControlNet (ControlNetModel.from_single_file) and the kohya LoRA
   (load_lora_weights) - the "loads in diffusers" check;
2. VAE bit accuracy on held-out flows (nearest-colour snapping, as netdiff decode);
3. generates N flows per class (prompt from conf/classes.json, canny hint of the
   class's template images) as PNGs, turns them into pcapng with `netdiff decode`,
   and evaluates with `netdiff eval` against the held-out real flows (train real
   flows as the memorization reference; the floor is real-train vs held-out),
   eval/utility.py (random forest) and a conditioning check (dominant transport
   and ports of each class);
4. writes everything to DATA/eval/ (metrics.json, tables) for the model card.

Usage: python train/generate_eval.py [--n 4] [--steps 10]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import train_default as td  # noqa: E402

from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler,  # noqa: E402
                       StableDiffusionControlNetPipeline, UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

WD = os.path.join(ROOT, "weights", "default")


def config_folder(d):
    """diffusers needs configs beside a single file (an LDM file states none); offline
    we give it our own: the same configs as config.json, random weights never used."""
    cfg = json.load(open(os.path.join(WD, "config.json")))
    unet = UNet2DConditionModel(**cfg["unet"])
    vae = AutoencoderKL(**cfg["vae"])
    te = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=tuple(
        cfg["controlnet"]["conditioning_embedding_out_channels"]))
    tok = td.tokenizer(os.path.join(d, "_tok"))
    sched = DDIMScheduler(**cfg["scheduler"])
    pipe = StableDiffusionControlNetPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, controlnet=cn,
                                             scheduler=sched, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    pipe.save_pretrained(os.path.join(d, "pipe"))
    cn.save_pretrained(os.path.join(d, "controlnet"))
    return os.path.join(d, "pipe"), os.path.join(d, "controlnet")


def load_pipe(tmp, lora_scale):
    pdir, cdir = config_folder(tmp)
    cn = ControlNetModel.from_single_file(os.path.join(WD, "control_netdiff_canny.safetensors"), config=cdir,
                                          torch_dtype=torch.float32)
    pipe = StableDiffusionControlNetPipeline.from_single_file(
        os.path.join(WD, "netdiff_default.safetensors"), config=pdir, controlnet=cn, safety_checker=None,
        requires_safety_checker=False, torch_dtype=torch.float32)
    # the text encoder is the fixed-seed frozen one; check the file holds exactly it
    ref = td.text_encoder().state_dict()
    got = pipe.text_encoder.state_dict()
    for k, v in ref.items():
        assert torch.equal(got[k].float(), v), k
    pipe.load_lora_weights(os.path.join(WD, "netdiff_lora.safetensors"), adapter_name="netdiff")
    pipe.fuse_lora(lora_scale=lora_scale)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def vae_bit_accuracy(vae, data, per_class):
    names, labels, arr = td.load_images(os.path.join(data, "images", "heldout"))
    sub = td.per_class(labels, per_class)
    arr = arr[sub]
    x = td.to_tensor(arr)
    ref = x.argmax(1)
    hits = tot = hits_occ = tot_occ = exact = 0
    with torch.no_grad():
        for i in range(0, len(x), 8):
            out = vae.decode(vae.encode(x[i:i + 8]).latent_dist.mean).sample
            p = out.argmax(1)  # nearest of the three colours
            r = ref[i:i + 8]
            hits += (p == r).sum().item()
            tot += r.numel()
            occ = r != 2
            hits_occ += ((p == r) & occ).sum().item()
            tot_occ += occ.sum().item()
            exact += sum(int(torch.equal(p[j], r[j])) for j in range(len(r)))
    return {"flows": len(x), "bit_accuracy": hits / tot, "bit_accuracy_occupied_rows": hits_occ / tot_occ,
            "exact_flows": exact}


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def transport_port(im):
    """first packet's transport and ports from a snapped image (nPrint columns:
    ipv4 0-479, tcp 480-959, udp 960-1023, icmp 1024-1087)."""
    c = im.argmax(-1)[0]  # 0 red=1, 1 green=0, 2 blue vacant
    bit = lambda a, b: int("".join("1" if v == 0 else "0" for v in c[a:b]), 2)
    tcp = (c[480:640] != 2).mean() > 0.5
    udp = (c[960:1024] != 2).mean() > 0.5
    if tcp:
        return "tcp", bit(480, 496), bit(496, 512)
    if udp:
        return "udp", bit(960, 976), bit(976, 992)
    return "other", -1, -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/data/default-model")
    ap.add_argument("--n", type=int, default=3, help="flows generated per class")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--lora-scale", type=float, default=1.0)
    ap.add_argument("--vae-per-class", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--netdiff", default=os.path.join(ROOT, "build", "netdiff"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    E = os.path.join(a.data, "eval")
    if os.path.isdir(E):
        shutil.rmtree(E)
    os.makedirs(E)
    res = {"n_per_class": a.n, "steps": a.steps, "guidance": a.guidance, "lora_scale": a.lora_scale}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        pipe = load_pipe(tmp, a.lora_scale)
    res["loads_in_diffusers"] = True
    res["vae"] = vae_bit_accuracy(pipe.vae, a.data, a.vae_per_class)
    print("VAE:", res["vae"], flush=True)

    import cv2
    from PIL import Image
    classes = td.class_table()
    synth = os.path.join(E, "synth")
    os.makedirs(synth)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    g = torch.Generator().manual_seed(td.SEED)
    cond = {}
    for c in classes:
        tpls = [np.array(Image.open(os.path.join(ROOT, "conf", t)).convert("RGB")) for t in c["templates"]]
        if not tpls:  # classes whose flows are too short for templates: their first train flows
            tn = sorted(f for f in os.listdir(os.path.join(a.data, "images", "train"))
                        if f.rsplit("_", 1)[0] == c["name"])[:4]
            tpls = [np.array(Image.open(os.path.join(a.data, "images", "train", f)).convert("RGB")) for f in tn]
        hints = [Image.fromarray(np.repeat(cv2.Canny(t, 100, 200)[..., None], 3, -1)) for t in tpls]
        ims = []
        for i in range(a.n):
            out = pipe(prompt=c["prompt"], image=hints[i % len(hints)], height=td.PACKETS, width=td.WIDTH,
                       num_inference_steps=a.steps, guidance_scale=a.guidance, generator=g, output_type="np")
            ims.append((out.images[0] * 255).round().clip(0, 255).astype(np.uint8))
        tp = []
        for i, im in enumerate(ims):
            Image.fromarray(im).save(os.path.join(synth, "%s_%06d.png" % (c["name"], i)))
            q = im.astype(np.float32)
            tp.append(transport_port(q))
        dom = max(c["transport"], key=lambda k: c["transport"][k])
        ports = {p["port"] for p in c["ports"][:3]}
        cond[c["name"]] = {"dominant_transport": dom, "top_ports": sorted(ports),
                           "transport_match": sum(t[0] == dom for t in tp) / len(tp),
                           "port_match": sum((t[1] in ports or t[2] in ports) for t in tp) / len(tp),
                           "generated": [list(t) for t in tp]}
        print("%s: %s (%.0fs)" % (c["name"], cond[c["name"]], time.time() - t0), flush=True)
    res["conditioning"] = cond
    res["generation_seconds"] = time.time() - t0

    nd = a.netdiff
    T = str(td.WIDTH - 1088)
    run([nd, "decode", "--format", "pcapng", "--timing-cols", T, synth, "-o", os.path.join(E, "synth.pcapng")])
    for side in ("train", "heldout"):
        run([nd, "decode", "--format", "pcapng", "--timing-cols", T, os.path.join(a.data, "images", side),
             "-o", os.path.join(E, side + ".pcapng")])
    ev = lambda real, syn, js, extra=(): run([nd, "eval", os.path.join(E, real), os.path.join(E, syn),
                                              "--json", os.path.join(E, js), "--packets", "64", *extra],
                                             stdout=open(os.path.join(E, js[:-5] + ".txt"), "w"))
    ev("heldout.pcapng", "synth.pcapng", "eval_synth.json", ("--train", os.path.join(E, "train.pcapng")))
    ev("heldout.pcapng", "train.pcapng", "eval_floor.json")
    run([sys.executable, os.path.join(ROOT, "eval", "utility.py"), "--real-train", os.path.join(E, "train.pcapng"),
         "--real-test", os.path.join(E, "heldout.pcapng"), "--synth", os.path.join(E, "synth.pcapng"),
         "--json", os.path.join(E, "utility.json")], stdout=open(os.path.join(E, "utility.txt"), "w"))
    with open(os.path.join(E, "metrics.json"), "w") as f:
        json.dump(res, f, indent=1)
    print("done in %.1f min -> %s" % ((time.time() - t0) / 60, E))


if __name__ == "__main__":
    main()
