#!/usr/bin/env python3
"""Measures the exported default model (weights/default/) through diffusers.

1. loads the exported files with diffusers' own loaders: the LDM single file
   (StableDiffusionControlNetPipeline.from_single_file), the original-layout
   ControlNet (ControlNetModel.from_single_file) and the kohya LoRA
   (load_lora_weights) - the "loads in diffusers" check;
2. VAE bit accuracy on held-out flows (nearest-colour snapping, as netdiff decode);
3. diffusers draws --n-diffusers flows per class from those files (it generates
   there too; their validity after `netdiff decode` is reported on its own);
4. the product draws --n flows per class: `netdiff generate` (C, every class in
   one run, netdiff generate's sampler defaults), evaluated with
   `netdiff eval` against the held-out real flows (train real flows as the
   memorization reference; the floor is real-train vs held-out), eval/utility.py
   (random forest) and a conditioning check (dominant transport and ports of
   each class, first packet, read by tshark);
5. writes everything to DATA/eval/ (metrics.json, tables) for the model card.

Usage: python train/generate_eval.py [--n 20] [--steps K] [--guidance G] [--strength S] [--eval-dir D]
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


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def conditioning_from_pcap(pcap, manifest, classes):
    """first packet of each generated flow: transport and ports (tshark), and whether the
    repair changed any port of the flow (the manifest's "repaired" counts): a port that the
    model drew as 0 is filled from the class's server ports, so "drawn" counts only flows
    whose ports came out of the model untouched."""
    out = subprocess.run(["tshark", "-r", pcap, "-T", "fields", "-E", "separator=|", "-e", "frame.comment",
                          "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport"],
                         check=True, capture_output=True, text=True).stdout
    first = {}
    for line in out.splitlines():
        com, ts, td_, us, ud = (line.split("|") + [""] * 5)[:5]
        if not com or com.split(",")[0] in first:
            continue
        fid, label = com.split(",", 1)
        tr = "tcp" if ts else "udp" if us else "other"
        ports = {int(x) for x in (ts, td_, us, ud) if x}
        first[fid] = (label, tr, ports)
    man = json.load(open(manifest))
    touched = {}
    for i, f in enumerate(man):
        r = f.get("repaired", {})
        touched[str(i)] = any(r.get(k) for k in ("tcp_sprt", "tcp_dprt", "udp_sport", "udp_dport"))
    cond = {}
    for c in classes:
        dom = max(c["transport"], key=lambda k: c["transport"][k])
        top = {p["port"] for p in c["ports"][:3]}
        fl = [(fid, v) for fid, v in first.items() if v[0] == c["name"]]
        n = max(1, len(fl))
        cond[c["name"]] = {"dominant_transport": dom, "top_ports": sorted(top), "flows": len(fl),
                           "transport_match": sum(v[1] == dom for _, v in fl) / n,
                           "port_match": sum(bool(v[2] & top) for _, v in fl) / n,
                           "port_match_drawn": sum(bool(v[2] & top) and not touched.get(fid, True)
                                                   for fid, v in fl) / n}
    return cond


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/data/default-model")
    ap.add_argument("--n", type=int, default=20, help="flows per class drawn by netdiff generate")
    ap.add_argument("--n-diffusers", type=int, default=1, help="flows per class drawn by diffusers")
    ap.add_argument("--steps", type=int, default=20, help="sampler steps (netdiff generate's default)")
    ap.add_argument("--guidance", type=float, default=7.5, help="CFG scale (netdiff generate's default)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lora-scale", type=float, default=1.0)
    ap.add_argument("--vae-per-class", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--netdiff", default=os.path.join(ROOT, "build", "netdiff"))
    ap.add_argument("--strength", type=float, default=1.0,
                    help="netdiff generate --strength (img2img from the class template below 1)")
    ap.add_argument("--eval-dir", default=None, help="results (default DATA/eval; emptied first)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    nd = a.netdiff
    E = a.eval_dir or os.path.join(a.data, "eval")
    if os.path.isdir(E):
        shutil.rmtree(E)
    os.makedirs(E)
    steps, guidance = a.steps, a.guidance
    res = {"n_per_class": a.n, "n_diffusers": a.n_diffusers, "steps": steps, "guidance": guidance,
           "lora_scale": a.lora_scale, "seed": a.seed, "strength": a.strength}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        pipe = load_pipe(tmp, a.lora_scale)
    res["loads_in_diffusers"] = True
    res["vae"] = td.vae_bit_accuracy(pipe.vae, a.data, a.vae_per_class)
    print("VAE:", res["vae"], flush=True)

    # 1. diffusers draws a few flows per class from the exported files (it generates there too)
    import cv2
    from PIL import Image
    classes = td.class_table()
    dsyn = os.path.join(E, "synth_diffusers")
    os.makedirs(dsyn)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    g = torch.Generator().manual_seed(td.SEED)
    for c in classes:
        tpls = [np.array(Image.open(os.path.join(ROOT, "conf", t)).convert("RGB")) for t in c["templates"]]
        if not tpls:  # classes whose flows are too short for templates: their first train flows
            tn = sorted(f for f in os.listdir(os.path.join(a.data, "images", "train"))
                        if f.rsplit("_", 1)[0] == c["name"])[:4]
            tpls = [np.array(Image.open(os.path.join(a.data, "images", "train", f)).convert("RGB")) for f in tn]
        hints = [Image.fromarray(np.repeat(cv2.Canny(t, 100, 200)[..., None], 3, -1)) for t in tpls]
        for i in range(a.n_diffusers):
            out = pipe(prompt=c["prompt"], image=hints[i % len(hints)], height=td.PACKETS, width=td.WIDTH,
                       num_inference_steps=steps, guidance_scale=guidance, generator=g, output_type="np")
            im = (out.images[0] * 255).round().clip(0, 255).astype(np.uint8)
            Image.fromarray(im).save(os.path.join(dsyn, "%s_%06d.png" % (c["name"], i)))
    res["diffusers_seconds"] = time.time() - t0
    T = str(td.WIDTH - 1088)
    run([nd, "decode", "--format", "pcapng", "--timing-cols", T, dsyn, "-o", os.path.join(E, "synth_diffusers.pcapng")])
    for side in ("train", "heldout"):
        run([nd, "decode", "--format", "pcapng", "--timing-cols", T, os.path.join(a.data, "images", side),
             "-o", os.path.join(E, side + ".pcapng")])

    # 2. the product: netdiff generate (C), every class, the class table's statistics for the repair
    t1 = time.time()
    spec = ",".join("%s=%d" % (c["name"], a.n) for c in classes)
    synth = os.path.join(E, "synth.pcapng")
    run([nd, "generate", "--class", spec, "--format", "pcapng", "--steps", str(steps), "--cfg", str(guidance),
         "--seed", str(a.seed), "--threads", str(a.threads), "--strength", str(a.strength), "-o", synth])
    res["generate_seconds"] = time.time() - t1
    res["conditioning"] = conditioning_from_pcap(synth, synth + ".json", classes)
    ev = lambda real, syn, js, extra=(): run([nd, "eval", os.path.join(E, real), os.path.join(E, syn),
                                              "--json", os.path.join(E, js), "--packets", "64", *extra],
                                             stdout=open(os.path.join(E, js[:-5] + ".txt"), "w"))
    ev("heldout.pcapng", "synth.pcapng", "eval_synth.json", ("--train", os.path.join(E, "train.pcapng")))
    ev("heldout.pcapng", "train.pcapng", "eval_floor.json")
    ev("heldout.pcapng", "synth_diffusers.pcapng", "eval_diffusers.json", ("--no-classes",))
    run([sys.executable, os.path.join(ROOT, "eval", "utility.py"), "--real-train", os.path.join(E, "train.pcapng"),
         "--real-test", os.path.join(E, "heldout.pcapng"), "--synth", synth,
         "--json", os.path.join(E, "utility.json")], stdout=open(os.path.join(E, "utility.txt"), "w"))
    with open(os.path.join(E, "metrics.json"), "w") as f:
        json.dump(res, f, indent=1)
    print("done in %.1f min -> %s" % ((time.time() - t0) / 60, E))


if __name__ == "__main__":
    main()
