#!/usr/bin/env python3
"""The peer of `netdiff generate` for tests/bench/bench_generate.sh: the same
default model (weights/default/: LDM single file, original-layout ControlNet,
kohya LoRA fused at 1.0), loaded by diffusers exactly as train/generate_eval.py
loads it, run by StableDiffusionControlNetPipeline on PyTorch CPU with the
same sampler (DDIM), steps, guidance, ControlNet scale and class prompt, the
canny hint of the class's template flows in turn (as gen/ picks them), and
the same number of flows in calls of --batch. --device cuda: the pipeline in
fp16 on the GPU (PyTorch's SDPA attention, diffusers' default there), each
stage timed to a torch.cuda.synchronize().

Prints one JSON line: flows, seconds (generation only, model load excluded;
cpu: the process's CPU seconds over the same span, every thread),
and the split by stage (text encoder, UNet + ControlNet steps, VAE decode,
the rest of the pipeline: hint preprocessing, scheduler, image output).
One untimed warm-up call of one step runs first, so the peer is not charged
for PyTorch's first-call set-up.

Usage: bench_generate_diffusers.py --class netflix -n 8 --batch 8 --steps 20
       --cfg 7.5 --control-scale 1.0 --threads 2 --seed 1
"""
import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "train"))


def timed(fn, acc, key, sync):
    def w(*a, **k):
        sync()
        t0 = time.perf_counter()
        r = fn(*a, **k)
        sync()
        acc[key] += time.perf_counter() - t0
        return r
    return w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--class", dest="cls", default="netflix")
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=7.5)
    ap.add_argument("--control-scale", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu (f32) or cuda (fp16)")
    a = ap.parse_args()

    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    import cv2
    from PIL import Image
    from diffusers import DDIMScheduler
    import generate_eval as ge
    import train_default as td

    with tempfile.TemporaryDirectory() as tmp:
        pipe = ge.load_pipe(tmp, 1.0)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    gpu = a.device == "cuda"
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    if gpu:
        pipe.to("cuda", torch.float16)
    c = [x for x in td.class_table() if x["name"] == a.cls][0]
    tpls = [np.array(Image.open(os.path.join(ROOT, "conf", t)).convert("RGB")) for t in c["templates"]]
    hints = [Image.fromarray(np.repeat(cv2.Canny(t, 100, 200)[..., None], 3, -1)) for t in tpls]

    acc = dict(text=0.0, steps=0.0, vae=0.0)
    pipe.text_encoder.forward = timed(pipe.text_encoder.forward, acc, "text", sync)
    pipe.unet.forward = timed(pipe.unet.forward, acc, "steps", sync)
    pipe.controlnet.forward = timed(pipe.controlnet.forward, acc, "steps", sync)
    pipe.scheduler.step = timed(pipe.scheduler.step, acc, "steps", sync)
    pipe.vae.decode = timed(pipe.vae.decode, acc, "vae", sync)

    def call(k, n, steps):
        gens = [torch.Generator(a.device).manual_seed(a.seed * 1000003 + k + i) for i in range(n)]
        return pipe(prompt=[c["prompt"]] * n, image=[hints[(k + i) % len(hints)] for i in range(n)],
                    height=td.PACKETS, width=td.WIDTH, num_inference_steps=steps,
                    guidance_scale=a.cfg, controlnet_conditioning_scale=a.control_scale,
                    generator=gens, output_type="np")

    with torch.inference_mode():
        call(0, 1, 1)  # warm-up, untimed
        for key in acc:
            acc[key] = 0.0
        sync()
        t0 = time.perf_counter()
        c0 = time.process_time()
        k = 0
        while k < a.n:
            n = min(a.batch, a.n - k)
            out = call(k, n, a.steps)
            assert out.images.shape == (n, td.PACKETS, td.WIDTH, 3)
            k += n
        sync()
        total = time.perf_counter() - t0
        cpu = time.process_time() - c0
    other = total - sum(acc.values())
    print(json.dumps(dict(flows=a.n, batch=a.batch, threads=torch.get_num_threads(), device=a.device,
                          seconds=total,
                          text=acc["text"], steps=acc["steps"], vae=acc["vae"], other=other, cpu=cpu)))


if __name__ == "__main__":
    main()
