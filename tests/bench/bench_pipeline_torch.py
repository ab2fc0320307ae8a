"""tests/bench/bench_pipeline_torch.py DIR DEVICE HxW STEPS REPS B1,B2,...

The diffusers side of bench_pipeline: StableDiffusionControlNetPipeline on the
SAME random SD1.5 files that bench_pipeline.c made (DIR/sd15.safetensors, an
LDM single file; DIR/cn.safetensors, lllyasviel layout), converted with
diffusers' own single-file converters. DEVICE cuda: fp16 with PyTorch's SDPA
attention (diffusers' default); cpu: f32. The same work per call as ours: the
text encoder on the same token ids (DIR/prompt_ids.safetensors: negative,
positive), CFG 7.5 as one doubled batch, the ControlNet at 1.0 on the same
kind of hint, STEPS DDIM steps (SD1.5's scheduler config), the VAE decode one
image at a time (enable_vae_slicing, as ours) to host numpy. One untimed
warm-up call of one step per batch size, then the best of REPS calls.

Prints "B seconds" per batch size on stdout. Exit status 2 when PyTorch or
diffusers is missing. Never needed by make or make test."""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionControlNetPipeline
    from safetensors import safe_open
    from transformers import CLIPTextConfig, CLIPTextModel
    import bench_unet_torch as bu
except ImportError as e:
    print("no PyTorch/diffusers: %s" % e, file=sys.stderr)
    sys.exit(2)

VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
           up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
           layers_per_block=2, act_fn="silu", latent_channels=4, norm_num_groups=32,
           sample_size=512, scaling_factor=0.18215)
CLIP = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
            layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
SCHED = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
             beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
             steps_offset=1, timestep_spacing="leading")


def log(msg):
    print("  diffusers: " + msg, file=sys.stderr, flush=True)


def load(d, dev, dt):
    with safe_open(os.path.join(d, "sd15.safetensors"), "pt") as f:
        keys = list(f.keys())
        unet = {k: f.get_tensor(k) for k in keys if k.startswith("model.diffusion_model.")}
        vae = {k: f.get_tensor(k) for k in keys if k.startswith("first_stage_model.")}
        te = {k[len("cond_stage_model.transformer."):]: f.get_tensor(k) for k in keys
              if k.startswith("cond_stage_model.transformer.")}
    unet = bu.build(bu.UNet2DConditionModel, bu.UNET, bu.sfu.convert_ldm_unet_checkpoint(unet, dict(bu.UNET)))
    vae_m = bu.build(AutoencoderKL, VAE, bu.sfu.convert_ldm_vae_checkpoint(vae, dict(VAE)))
    with torch.device("meta"):
        te_m = CLIPTextModel(CLIPTextConfig(**CLIP))
    # transformers versions differ on whether the keys keep "text_model."
    if not any(k.startswith("text_model.") for k in te_m.state_dict()):
        te = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in te.items()}
    missing, unexpected = te_m.load_state_dict({k: v.float() for k, v in te.items()}, strict=False,
                                               assign=True)
    if unexpected or any("position_ids" not in k for k in missing):
        sys.exit("text encoder: %d missing, %d unexpected keys (e.g. %s)" %
                 (len(missing), len(unexpected), (missing + unexpected)[:3]))
    for name, buf in list(te_m.named_buffers()):  # buffers the file does not hold (position_ids)
        if buf.is_meta:
            mod = te_m.get_submodule(name.rsplit(".", 1)[0])
            mod.register_buffer(name.rsplit(".", 1)[1], torch.arange(77).unsqueeze(0),
                                persistent=False)
    cn = bu.build(bu.ControlNetModel, bu.CONTROLNET,
                  bu.sfu.convert_controlnet_checkpoint(bu.load_file(os.path.join(d, "cn.safetensors")),
                                                       dict(bu.CONTROLNET)))
    pipe = StableDiffusionControlNetPipeline(
        vae=vae_m, text_encoder=te_m.eval(), tokenizer=None, unet=unet, controlnet=cn,
        scheduler=DDIMScheduler(**SCHED), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.to(dev, dt)
    (pipe.vae.enable_slicing if hasattr(pipe.vae, "enable_slicing") else pipe.enable_vae_slicing)()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def hint(B, H, W, dev, dt):
    """bench_pipeline.c's make_hint: vertical edges on the first rows."""
    x = torch.arange(W)
    y = torch.arange(H)
    out = torch.zeros(B, 3, H, W)
    for k in range(B):
        rows = H // (2 + k % 3)
        m = ((x * 7 + k) % 13 < 2)[None, :] & (y < rows)[:, None]
        out[k, :] = m.float()
    return out.to(dev, dt)


def main():
    d, dev, size, steps, reps, batches = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), \
        int(sys.argv[5]), [int(b) for b in sys.argv[6].split(",")]
    H, W = (int(v) for v in size.split("x"))
    dt = torch.float16 if dev == "cuda" else torch.float32
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    t0 = time.time()
    pipe = load(d, dev, dt)
    with safe_open(os.path.join(d, "prompt_ids.safetensors"), "pt") as f:
        ids = f.get_tensor("ids").long().to(dev)
    log("torch %s, diffusers pipeline on %s (%s) loaded in %.1f s" %
        (torch.__version__, dev, dt, time.time() - t0))

    def call(B, n_steps):
        emb = pipe.text_encoder(ids)[0]
        neg, pos = emb[0:1].repeat(B, 1, 1), emb[1:2].repeat(B, 1, 1)
        gens = [torch.Generator(dev).manual_seed(i + 1) for i in range(B)]
        out = pipe(prompt_embeds=pos, negative_prompt_embeds=neg, image=hint(B, H, W, dev, dt),
                   height=H, width=W, num_inference_steps=n_steps, guidance_scale=7.5,
                   controlnet_conditioning_scale=1.0, generator=gens, output_type="np")
        assert out.images.shape == (B, H, W, 3)
        return out.images

    with torch.inference_mode():
        for B in batches:
            try:
                call(B, 1)  # warm-up, untimed
                best = float("inf")
                for _ in range(reps):
                    sync()
                    t0 = time.perf_counter()
                    call(B, steps)
                    sync()
                    best = min(best, time.perf_counter() - t0)
                    log("batch %d: %.2f s" % (B, time.perf_counter() - t0))
                print("%d %.4f" % (B, best), flush=True)
            except torch.OutOfMemoryError as e:
                log("batch %d: out of memory (%s)" % (B, str(e).splitlines()[0]))
                if dev == "cuda":
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
