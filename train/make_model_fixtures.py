#!/usr/bin/env python3
"""Writes the fixtures of model/ section 1 under tests/fixtures/model/
(committed; make never runs this):

  tokenizer.json  prompts and the ids transformers.CLIPTokenizer gives them
                  (unframed ids, and the 77 SD1.5 ids: truncation, pad 49407);
                  the tokenizer is built from the same open_clip merges file
                  that model/data/ ships
  samplers.json   SD1.5 schedule (float32 alphas_cumprod) and, per sampler, the
                  diffusers scheduler's timesteps, sigmas and final latent for a
                  fake model (see fake_eps), 20 steps; Euler a gets its noise
                  from the fixture
  canny/*.pgm,*.ppm  real flow images (netdiff encode --images) cropped, and
                  cv2.Canny(img, 100, 200) of them (RGB and grey)
  pipeline.safetensors  whole runs of diffusers' StableDiffusionControlNetPipeline
                  on the tiny model (tests/fixtures/weights/, train/make_fixtures.py):
                  prompt and negative prompt, CFG, a canny hint, DDIM and Euler
                  from a given initial noise; the ids, hint, latents after every
                  step and the output image (see make_pipeline)

Usage: /work/venv/bin/python train/make_model_fixtures.py [tokenizer|samplers|canny|pipeline ...]
"""
import gzip
import json
import math
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "model")
VOCAB_GZ = os.path.join(ROOT, "model", "data", "bpe_simple_vocab_16e6.txt.gz")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def hf_tokenizer():
    from transformers import CLIPTokenizer
    merges = gzip.open(VOCAB_GZ).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "vocab.json"), "w") as f:
        json.dump({v: i for i, v in enumerate(vocab)}, f)
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return CLIPTokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"))


PROMPTS = (
    ["pixelated network data, type-%d" % i for i in range(30)] + [
        "", " ", "   \t\n  ", "a lovely cat", "a photograph of an astronaut riding a horse",
        "Hello   World!! 123", "  leading and trailing  ", "tab\tnew\nline\r\ncr",
        "it's they're we've I'm you'll he'd don't", "''s 'S ''' '''s x'", "rock'n'roll",
        "it’s curly ’s", "a,b;c:d.e!f?g", "(((masterpiece))), [best quality], {x}",
        "<lora:netflix:0.8>", "$100 @home #tag %50 ^_^ &amp; *star* ~tilde~ `code` |pipe|",
        "C:\\path\\to\\file.pcap", "http://example.com/a?b=c&d=e", "e-mail: foo@bar.org",
        "1234567890", "3.14159 2,718 1e-5 0x1F", "v1.5 sd15 x264 h.265 802.11ac",
        "Ⅻ ½ ² ³ ① ٣ ४ 〇", "naïve café résumé", "nai\u0308ve cafe\u0301 re\u0301sume\u0301",
        "Å Å Å", "ḱ ḱ ǩ", "\u1100\u1161\u11a8 한국어", "日本語のテキスト", "中文提示词，逗号。",
        "Ελληνικά ΟΔΟΣ σς Σ", "Русский ТЕКСТ", "İstanbul ıi IİŞ", "STRASSE straße ẞ", "ǅ ǆ Ǆ",
        "emoji 😀🚀 👍🏽 👨‍👩‍👧", "zero\u200bwidth joiner\u200d", "nbsp\u00a0here\u2003em\u3000ideo",
        "\u0085nel\u2028ls\u2029ps", "mixed漢字and英語123abc", "العربية نص", "עברית", "हिन्दी पाठ",
        "ไทย", "Ａｂｃ ＦＵＬＬ", "ﬁ ligature ﬂ", "x\u0301\u0327 q\u0327\u0301", "\u0301leading mark",
        "<|startoftext|>a photo<|endoftext|>", "<|endoftext|><|endoftext|>", "<|ENDOFTEXT|> x",
        "a<|endoftext|>b", "!<|startoftext|>", "<|startoftext", "<| endoftext |>",
        "type-0, type-1, type-2", "NETWORK-DATA, pixelated; TYPE_29", "____----====....",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "\x01\x02 control \x7f chars",
    ] + [
        " ".join("pixelated network data, type-%d" % (i % 30) for i in range(12)),
        "a " * 80, "word " * 74 + "end", "1" * 100, "!" * 200,
        "a photograph of an astronaut riding a horse on the moon, highly detailed, 8k, "
        "trending on artstation, by greg rutkowski and alphonse mucha, cinematic lighting, "
        "volumetric fog, sharp focus, octane render, unreal engine 5, concept art, digital "
        "painting, intricate, elegant, smooth, illustration, masterpiece, best quality",
    ])


def random_prompts(n=300, seed=5):
    """Random strings over a pool that exercises NFC (combining marks, Hangul
    jamo), lowercase, letters/numbers of many scripts, whitespace, specials."""
    import random
    rnd = random.Random(seed)
    pool = (list("abcXYZ019 .,!?'-_<|>") + ["'s", "'LL", "<|endoftext|>", "<|startoftext|>", "  ", "\t", "\n"] +
            [chr(c) for c in (0x300, 0x301, 0x308, 0x327, 0x323, 0x345, 0x1100, 0x1161, 0x11A8, 0xAC00,
                              0xD55C, 0xC5, 0x212B, 0x130, 0x131, 0x3A3, 0x3C2, 0x1E9E, 0xDF, 0x1C5,
                              0x2160, 0xBD, 0x663, 0x96A, 0x3007, 0xFF21, 0xFB01, 0x200B, 0xA0, 0x3000,
                              0x2028, 0x85, 0x1F600, 0x1F3FD, 0x200D, 0x4E2D, 0x65E5, 0x5D0, 0x627,
                              0x928, 0x94D, 0xE44, 0x10400, 0x1D400, 0x2CF, 0x1D7CE, 0xE9, 0x65, 0x387,
                              0x344, 0x95C, 0x1F80, 0x1E0A, 0x1E0C, 0x2126, 0x41, 0x30A, 0x3099, 0x304B,
                              0x1D15E, 0x0F73, 0x2ADC, 0x7F, 0x1, 0xFFFD, 0x10FFFD, 0xE000)])
    out = []
    for _ in range(n):
        out.append("".join(rnd.choice(pool) for _ in range(rnd.randint(1, 24))))
    return out


def make_tokenizer():
    tok = hf_tokenizer()
    # sanity: the ids sd15.md quotes
    assert tok("a lovely cat")["input_ids"] == [49406, 320, 2165, 2368, 49407]
    rows = []
    for p in PROMPTS + random_prompts():
        raw = tok(p, add_special_tokens=False)["input_ids"]
        framed = tok(p, padding="max_length", max_length=77, truncation=True)["input_ids"]
        assert len(framed) == 77
        rows.append({"prompt": p, "ids": raw, "framed": framed})
    with open(os.path.join(OUT, "tokenizer.json"), "w") as f:
        json.dump({"source": "transformers %s CLIPTokenizer from model/data/bpe_simple_vocab_16e6.txt.gz"
                   % __import__("transformers").__version__, "prompts": rows}, f, ensure_ascii=True, indent=0)
    print("tokenizer.json: %d prompts" % len(rows))


# ---- samplers ------------------------------------------------------------------
SHAPE = (1, 4, 8, 8)


def fake_eps(x_in, t):
    """The fake UNet: eps_j = 0.1 * x_in_j + 0.05 * sin(0.01 t + 0.1 j), in float64
    then float32 (tests/model/test_sampler.c computes the same)."""
    import numpy as np
    import torch
    xi = x_in.detach().double().numpy().reshape(-1)
    j = np.arange(xi.size, dtype=np.float64)
    e = 0.1 * xi + 0.05 * np.sin(0.01 * float(t) + 0.1 * j)
    return torch.from_numpy(e.astype(np.float32).reshape(x_in.shape))


def make_samplers():
    import numpy as np
    import torch
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler,
                           EulerAncestralDiscreteScheduler, EulerDiscreteScheduler)
    from diffusers.schedulers import scheduling_euler_ancestral_discrete as ea_mod
    common = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                  beta_schedule="scaled_linear", prediction_type="epsilon",
                  timestep_spacing="leading", steps_offset=1)
    makers = {
        "ddim": lambda: DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **common),
        "euler": lambda: EulerDiscreteScheduler(**common),
        "euler_a": lambda: EulerAncestralDiscreteScheduler(**common),
        "dpmpp_2m_karras": lambda: DPMSolverMultistepScheduler(
            algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True, **common),
    }
    g = torch.Generator().manual_seed(1234)
    z0 = torch.randn(SHAPE, generator=g)
    runs = []
    for steps in (20, 7):
        noise = torch.randn((steps,) + SHAPE, generator=g)
        for name, mk in makers.items():
            sch = mk()
            sch.set_timesteps(steps)
            x = z0 * sch.init_noise_sigma
            calls = [0]

            def fake_randn(shape, **kw):
                k = calls[0]
                calls[0] += 1
                return noise[k].reshape(shape).clone()
            ea_mod.randn_tensor = fake_randn
            for t in sch.timesteps:
                x_in = sch.scale_model_input(x, t)
                eps = fake_eps(x_in, t)
                x = sch.step(eps, t, x).prev_sample
            if name == "ddim":
                sig = [float(v) for v in ((1 - sch.alphas_cumprod[sch.timesteps.long()]) /
                                          sch.alphas_cumprod[sch.timesteps.long()]) ** 0.5] + [0.0]
            else:
                sig = [float(v) for v in sch.sigmas]
            runs.append({
                "sampler": name, "steps": steps,
                "timesteps": [float(t) for t in sch.timesteps],
                "sigmas": sig,
                "init_noise_sigma": float(sch.init_noise_sigma),
                "noise_calls": calls[0],
                "final": [float(v) for v in x.reshape(-1)],
            })
            print("%s %d: t %s.. final[0] %.6f" % (name, steps, runs[-1]["timesteps"][:3], runs[-1]["final"][0]))
    ref = DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **common)
    out = {
        "source": "diffusers %s schedulers, fake model eps = 0.1 x_in + 0.05 sin(0.01 t + 0.1 j)"
                  % __import__("diffusers").__version__,
        "shape": list(SHAPE),
        "alphas_cumprod": [float(v) for v in ref.alphas_cumprod],
        "z0": [float(v) for v in z0.reshape(-1)],
        "runs": runs,
    }
    # the same draws the runs used, for Euler a's injected noise
    g2 = torch.Generator().manual_seed(1234)
    torch.randn(SHAPE, generator=g2)
    out["noise"] = {str(steps): [float(v) for v in torch.randn((steps,) + SHAPE, generator=g2).reshape(-1)]
                    for steps in (20, 7)}
    with open(os.path.join(OUT, "samplers.json"), "w") as f:
        json.dump(out, f)
    print("samplers.json: %d runs" % len(runs))


# ---- canny ---------------------------------------------------------------------
# Real flow images: build/netdiff encode /work/shared/testdata/apps/{netflix,discord}
#   --images DIR --packets 128 (1088x128 RGB PNG), picked by name.
CANNY_FLOWS = os.environ.get("ND_FLOW_DIR", "/tmp/flows")
CANNY_PICK = ["netflix_000032.png", "discord_%s.png", "netflix_000003.png"]


def make_canny():
    import cv2
    import numpy as np
    out = os.path.join(OUT, "canny")
    os.makedirs(out, exist_ok=True)
    names = sorted(os.listdir(CANNY_FLOWS))
    biggest_discord = max((n for n in names if n.startswith("discord_")),
                          key=lambda n: os.path.getsize(os.path.join(CANNY_FLOWS, n)))
    picks = [CANNY_PICK[0], biggest_discord, CANNY_PICK[2]]
    cases = []
    for i, n in enumerate(picks):
        bgr = cv2.imread(os.path.join(CANNY_FLOWS, n), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        cases.append(("flow%d" % i, rgb, n))
    # a synthetic image with every gradient direction, soft edges and noise
    rs = np.random.RandomState(7)
    h, w = 80, 96
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    img[..., 0] = 128 + 100 * np.sin(xx / 7.0) * np.cos(yy / 5.0)
    img[..., 1] = np.where((xx - 48) ** 2 + (yy - 40) ** 2 < 600, 220, 30) + 20 * rs.randn(h, w)
    img[..., 2] = (xx * 2.5 + yy * 1.3) % 256
    img = np.clip(img, 0, 255).astype(np.uint8)
    cases.append(("synth", img, "synthetic"))
    for name, rgb, src in cases:
        cv2.imwrite(os.path.join(out, name + ".png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        # what the ControlNet annotators run: cv2.Canny on the RGB array
        for lo, hi in ((100, 200), (50, 120)):
            e = cv2.Canny(rgb, lo, hi)
            cv2.imwrite(os.path.join(out, "%s_rgb_%d_%d.png" % (name, lo, hi)), e)
        blur = cv2.GaussianBlur(rgb, (5, 5), 1.4)
        cv2.imwrite(os.path.join(out, name + "_blur.png"), cv2.cvtColor(blur, cv2.COLOR_RGB2BGR))
        cv2.imwrite(os.path.join(out, "%s_blur_100_200.png" % name), cv2.Canny(blur, 100, 200))
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        cv2.imwrite(os.path.join(out, name + "_grey.png"), grey)
        cv2.imwrite(os.path.join(out, "%s_grey_100_200.png" % name), cv2.Canny(grey, 100, 200))
        print("canny %s (%s) %dx%d edges %d" % (name, src, rgb.shape[1], rgb.shape[0],
                                               int((cv2.Canny(rgb, 100, 200) > 0).sum())))
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("Made by train/make_model_fixtures.py canny (OpenCV %s).\n\n" % cv2.__version__)
        f.write("NAME.png: RGB input; NAME_rgb_LO_HI.png: cv2.Canny(rgb, LO, HI);\n")
        f.write("NAME_grey.png: cv2.cvtColor(rgb, RGB2GRAY); NAME_grey_100_200.png: its canny.\n")
        f.write("NAME_blur.png: cv2.GaussianBlur(rgb, (5, 5), 1.4); NAME_blur_100_200.png: its canny.\n\n")
        for name, rgb, src in cases:
            f.write("- %s: %s\n" % (name, src))


# ---- whole pipeline ------------------------------------------------------------
WEIGHTS_FX = os.path.join(ROOT, "tests", "fixtures", "weights")
PIPE_LATENT = (4, 8)          # rectangular: an H/W mix-up cannot pass
PIPE_PROMPT = "the cat and the cat, type-3"
PIPE_NEGATIVE = "blurry"
PIPE_GUIDANCE = 7.5
PIPE_CONTROL_SCALE = 0.8
PIPE_RUNS = (("ddim", 5), ("euler", 4))


def make_pipeline():
    """diffusers' own StableDiffusionControlNetPipeline, unmodified, on the tiny
    model. The tiny VAE scales by 2 but the tiny ControlNet's hint encoder by 8,
    so the call names the hint's size as height/width (the pipeline then takes
    its size from the hint) and passes the initial latents itself: the UNet runs
    on a 4x8 latent, the ControlNet on a 32x64 hint, the image is 8x16.
    Scheduler: SD1.5's (scaled-linear, 'leading', steps_offset 1; DDIM with
    set_alpha_to_one False), built explicitly (sd15.md: from_config traps).
    The hint is cv2.Canny(100, 200) / 255 of a 32x64 crop of a real flow image
    (canny/flow0.png), as the ControlNet annotators make it; the C test runs
    sd_canny on the same bytes."""
    import cv2
    import numpy as np
    import torch
    from diffusers import (ControlNetModel, DDIMScheduler, EulerDiscreteScheduler,
                           StableDiffusionControlNetPipeline)
    from safetensors.torch import save_file
    torch.manual_seed(0)
    cn = ControlNetModel.from_pretrained(os.path.join(WEIGHTS_FX, "tiny_controlnet_diffusers"),
                                         torch_dtype=torch.float32)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        os.path.join(WEIGHTS_FX, "tiny_diffusers"), controlnet=cn, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False, torch_dtype=torch.float32)
    pipe.tokenizer.model_max_length = 77  # the tiny tokenizer's config leaves it unbounded
    pipe.set_progress_bar_config(disable=True)
    h, w = PIPE_LATENT
    f_cn = 2 ** (len(cn.config.conditioning_embedding_out_channels) - 1)
    bgr = cv2.imread(os.path.join(OUT, "canny", "flow0.png"), cv2.IMREAD_COLOR)
    rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[:h * f_cn, :w * f_cn])
    edges = cv2.Canny(rgb, 100, 200)
    hint = torch.from_numpy(edges.astype(np.float32) / 255.0)[None, None].repeat(1, 3, 1, 1)
    tok = pipe.tokenizer
    ids = [tok(p, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids[0]
           for p in (PIPE_NEGATIVE, PIPE_PROMPT)]
    g = torch.Generator().manual_seed(99)
    z = torch.randn((1, 4, h, w), generator=g)
    common = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                  beta_schedule="scaled_linear", prediction_type="epsilon",
                  timestep_spacing="leading", steps_offset=1)
    schedulers = {"ddim": lambda: DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **common),
                  "euler": lambda: EulerDiscreteScheduler(**common)}
    out = {"prompt.ids": torch.stack(ids).to(torch.int32), "hint.rgb": torch.from_numpy(rgb),
           "hint": hint, "z": z}
    for name, steps in PIPE_RUNS:
        pipe.scheduler = schedulers[name]()
        lat = []

        def keep(p, i, t, kw):
            lat.append(kw["latents"][0].clone())
            return kw
        with torch.no_grad():
            img = pipe(PIPE_PROMPT, image=hint, height=h * f_cn, width=w * f_cn,
                       num_inference_steps=steps, guidance_scale=PIPE_GUIDANCE,
                       negative_prompt=PIPE_NEGATIVE, controlnet_conditioning_scale=PIPE_CONTROL_SCALE,
                       latents=z.clone(), output_type="pt", callback_on_step_end=keep).images
        assert img.shape == (1, 3, 2 * h, 2 * w), img.shape
        out[name + ".timesteps"] = pipe.scheduler.timesteps.to(torch.float32)
        out[name + ".latents"] = torch.stack(lat)
        out[name + ".image"] = img.to(torch.float32)
        out[name + ".params"] = torch.tensor([PIPE_GUIDANCE, PIPE_CONTROL_SCALE], dtype=torch.float32)
        print("pipeline %s %d steps: t %s, image mean %.4f" %
              (name, steps, [int(t) for t in pipe.scheduler.timesteps], float(img.mean())))
    meta = {"source": "diffusers %s StableDiffusionControlNetPipeline, train/make_model_fixtures.py pipeline"
            % __import__("diffusers").__version__, "prompt": PIPE_PROMPT, "negative_prompt": PIPE_NEGATIVE}
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "pipeline.safetensors"), meta)
    print("pipeline.safetensors: %d bytes" % os.path.getsize(os.path.join(OUT, "pipeline.safetensors")))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    what = sys.argv[1:] or ["tokenizer", "samplers", "canny", "pipeline"]
    for w in what:
        globals()["make_" + w]()
